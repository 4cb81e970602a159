"""The cloud link: feedback, uplink, channel, key, link health; imports locker, storage, config."""
