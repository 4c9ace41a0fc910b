package server

// What the external tests (package server_test) need from inside the server.

var ParseHello = parseHello

const MaxBadInRow = maxBadInRow

func (s *Server) MediaSignature(connectorID, server, mediaID string, expires int64) string {
	return s.mediaSignature(connectorID, server, mediaID, expires)
}

// QueuedForCommit is how many events of connectorID's live connection wait
// for the committer, or -1 without a live connection.
func (s *Server) QueuedForCommit(connectorID string) int {
	c := s.live(connectorID)
	if c == nil {
		return -1
	}
	return len(c.commitIn)
}
