"""The locker's domain: cabinets, doors, commands, alarms, the journal; imports config, storage."""
