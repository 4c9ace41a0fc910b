-- v7 -> v8: Portals by contact
-- A contact's portals are looked up on every profile change of the contact
-- (its name and picture show in each of them), and the ghosts without a
-- portal are found at start; without the index both read the whole table.
CREATE INDEX portal_contact_idx ON portal (contact_id);
