package directory

// QueueDepth returns how many validated updates wait for an epoch and the
// queue's capacity (Config.QueueSize); Update fails with QUEUE_FULL when
// they are equal. For metrics.
func (s *Server) QueueDepth() (queued, capacity int) { return len(s.queue), cap(s.queue) }
