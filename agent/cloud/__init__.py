"""The cloud link: feedback body, uplink, command channel; imports locker, storage."""
