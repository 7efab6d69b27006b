package directory

// QueueDepth returns how many validated updates wait for an epoch and the
// queue's capacity (Config.QueueSize); Update fails with QUEUE_FULL when
// they are equal. For metrics.
// With the shared state it counts the durable queue table (shared by every
// process), -1 if the database does not answer within a second.
func (s *Server) QueueDepth() (queued, capacity int) {
	if s.sh != nil {
		return s.sharedQueueDepth(), s.cfg.QueueSize
	}
	return len(s.queue), cap(s.queue)
}
