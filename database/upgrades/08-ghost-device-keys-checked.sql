-- v8 -> v9: Whether a ghost device's one-time keys on the homeserver were checked
-- A device whose first /sync ran before the fix of its key count
-- (e2ee/sync.go) may have a one-time key on the homeserver that its Olm
-- account dropped; the bridge claims and replaces such a device's keys once
-- (e2ee/otkrepair.go), then sets this. Devices from before this upgrade get
-- false; the bridge stores the devices it makes now as checked.
ALTER TABLE ghost_device ADD COLUMN keys_checked BOOLEAN NOT NULL DEFAULT false;
