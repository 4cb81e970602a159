"""The cloud link: feedback, uplink, command channel, key, link health; imports locker, storage."""
