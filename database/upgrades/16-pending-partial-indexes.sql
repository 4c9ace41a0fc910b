-- v16 -> v17: The pending indexes of the inbox and of mx_event hold only pending rows
-- Every bridged message marks its inbox row done, and every Matrix event
-- its mx_event row. With done a column of the index, that update put a
-- new entry in the index for the row's new version (a row whose indexed
-- column changes is no HOT update), an entry for a row no reader of the
-- index wants: the readers ask for pending rows (done=false) only. As
-- partial indexes, a row's version marked done gets no entry, and the
-- indexes stay the size of what is pending rather than of everything the
-- housekeeping has not deleted yet (docs/design.md, "Pending rows only").
DROP INDEX inbox_pending_idx;
CREATE INDEX inbox_pending_idx ON inbox (connector_id, seq) WHERE done=false;
DROP INDEX mx_event_pending_idx;
CREATE INDEX mx_event_pending_idx ON mx_event (seq) WHERE done=false;
