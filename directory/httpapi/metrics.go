package httpapi

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// metrics are the Prometheus metrics of one Handler (its own registry).
type metrics struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
	requests *prometheus.CounterVec
	syncErrs prometheus.Counter
}

func newMetrics(f *follower, queue func() (int, int), now func() time.Time) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keyline_request_duration_seconds",
		Help:    "Latency of directory requests by transport (grpc, http) and method (Update, Lookup, History, ...).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"transport", "method"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyline_requests_total",
		Help: "Directory requests by transport, method and gRPC status code name (OK, InvalidArgument, ResourceExhausted, ...).",
	}, []string{"transport", "method", "code"})
	m.syncErrs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keyline_http_follower_errors_total",
		Help: "Failed polls of the log by the HTTP server's follower (checkpoint fetch, signature, tile sync).",
	})
	gauge := func(name, help string, fn func(s Snapshot) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return fn(f.snapshot()) })
	}
	m.reg.MustRegister(m.duration, m.requests, m.syncErrs,
		gauge("keyline_log_size", "Leaves in the log at the latest verified checkpoint.", func(s Snapshot) float64 { return float64(s.Size) }),
		gauge("keyline_epoch", "Latest epoch number.", func(s Snapshot) float64 { return float64(s.Epoch.Epoch) }),
		gauge("keyline_epoch_timestamp_seconds", "Timestamp of the latest epoch record (Unix seconds).", func(s Snapshot) float64 {
			if !s.Synced {
				return 0
			}
			return float64(s.Epoch.Time.Unix())
		}),
		gauge("keyline_checkpoint_age_seconds", "Age of the latest epoch record; clients reject it past max_checkpoint_age.", func(s Snapshot) float64 {
			if !s.Synced {
				return 0
			}
			return now().Sub(s.Epoch.Time).Seconds()
		}),
		gauge("keyline_account_updates", "Account update leaves in the log.", func(s Snapshot) float64 { return float64(s.Updates) }),
		gauge("keyline_resets", "Directory reset leaves in the log.", func(s Snapshot) float64 { return float64(s.Resets) }),
		gauge("keyline_resets_pending", "Resets whose window is open (logged, not cancelled, not yet in effect; of the last 100 resets).", func(s Snapshot) float64 { return float64(s.PendingResets) }),
		gauge("keyline_checkpoint_cosignatures", "Valid trusted witness cosignatures on the latest checkpoint.", func(s Snapshot) float64 { return float64(s.Cosigners) }),
		gauge("keyline_witness_quorum", "Cosignatures clients require (trust.json witness_quorum).", func(s Snapshot) float64 { return float64(s.Quorum) }),
		gauge("keyline_log_corrupt", "1 if the log's leaves did not hash to a signed checkpoint (tiles frozen).", func(s Snapshot) float64 {
			if s.Corrupt {
				return 1
			}
			return 0
		}),
		newWitnessCollector(f),
	)
	if queue != nil {
		m.reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyline_queue_depth", Help: "Validated updates waiting for an epoch."}, func() float64 { q, _ := queue(); return float64(q) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyline_queue_capacity", Help: "Queue capacity; updates fail with QUEUE_FULL when the depth reaches it."}, func() float64 { _, c := queue(); return float64(c) }),
		)
	}
	return m
}

// observe records one request.
func (m *metrics) observe(transport, method string, start time.Time, err error) {
	m.duration.WithLabelValues(transport, method).Observe(time.Since(start).Seconds())
	m.requests.WithLabelValues(transport, method, status.Code(err).String()).Inc()
}

// UnaryInterceptor returns a gRPC interceptor that records the latency and
// status of every directory RPC in the Handler's metrics (method label:
// the RPC name, e.g. "Lookup"). Pass it to the directory's gRPC server.
func (h *Handler) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		method := info.FullMethod
		for i := len(method) - 1; i >= 0; i-- {
			if method[i] == '/' {
				method = method[i+1:]
				break
			}
		}
		h.metrics.observe("grpc", method, start, err)
		return resp, err
	}
}

// witnessCollector exports per-witness gauges.
type witnessCollector struct {
	f                   *follower
	size, lag, seen, in *prometheus.Desc
}

func newWitnessCollector(f *follower) *witnessCollector {
	l := []string{"witness"}
	return &witnessCollector{
		f:    f,
		size: prometheus.NewDesc("keyline_witness_cosigned_size", "Largest log size seen cosigned by the witness.", l, nil),
		lag:  prometheus.NewDesc("keyline_witness_lag_entries", "Log size minus the witness's largest cosigned size.", l, nil),
		seen: prometheus.NewDesc("keyline_witness_last_cosignature_timestamp_seconds", "When the witness's newest cosignature was first seen (Unix seconds; 0: never).", l, nil),
		in:   prometheus.NewDesc("keyline_witness_cosigned_latest", "1 if the latest checkpoint carries the witness's valid cosignature.", l, nil),
	}
}

func (c *witnessCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.lag
	ch <- c.seen
	ch <- c.in
}

func (c *witnessCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.f.snapshot()
	for _, w := range s.Witnesses {
		var seen, in float64
		if !w.LastSeen.IsZero() {
			seen = float64(w.LastSeen.Unix())
		}
		if w.InLatest {
			in = 1
		}
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(w.CosignedSize), w.Name)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(s.Size-min(w.CosignedSize, s.Size)), w.Name)
		ch <- prometheus.MustNewConstMetric(c.seen, prometheus.GaugeValue, seen, w.Name)
		ch <- prometheus.MustNewConstMetric(c.in, prometheus.GaugeValue, in, w.Name)
	}
}
