// Package metrics holds shiphold's Prometheus collectors: per-backend CSI operation latency,
// outcome and concurrency, and backend reachability, plus the HTTP endpoint that serves them.
package metrics

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

const namespace = "shiphold"

// NoBackend labels calls that concern no backend (Identity calls, or an ID that names none).
const NoBackend = "none"

// OperationBuckets are the latency buckets in seconds: CSI calls range from a millisecond
// (Probe) to minutes (a clone or a large mkfs).
var OperationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Metrics is the set of shiphold collectors registered on one registry.
type Metrics struct {
	operationDuration *prometheus.HistogramVec
	operationsTotal   *prometheus.CounterVec
	operationsFlight  *prometheus.GaugeVec
	backendUp         *prometheus.GaugeVec
	backendLastProbe  *prometheus.GaugeVec

	now func() time.Time
}

// New creates the collectors and registers them on reg. Collectors already registered there
// (a second New on the same registry) are reused, so New never panics on a shared registry.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		operationDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "csi", Name: "operation_duration_seconds",
			Help:    "Duration of CSI gRPC calls by backend and operation.",
			Buckets: OperationBuckets,
		}, []string{"backend", "operation"}),
		operationsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "csi", Name: "operations_total",
			Help: "CSI gRPC calls by backend, operation and resulting gRPC code.",
		}, []string{"backend", "operation", "grpc_code"}),
		operationsFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "csi", Name: "operations_in_flight",
			Help: "CSI gRPC calls currently being served, by backend and operation.",
		}, []string{"backend", "operation"}),
		backendUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "backend_up",
			Help: "1 if the last probe reached the backend, 0 if not.",
		}, []string{"backend", "kind"}),
		backendLastProbe: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "backend_last_probe_timestamp_seconds",
			Help: "Unix time of the last backend reachability probe.",
		}, []string{"backend", "kind"}),
		now: time.Now,
	}
	if reg != nil {
		m.operationDuration = register(reg, m.operationDuration)
		m.operationsTotal = register(reg, m.operationsTotal)
		m.operationsFlight = register(reg, m.operationsFlight)
		m.backendUp = register(reg, m.backendUp)
		m.backendLastProbe = register(reg, m.backendLastProbe)
	}
	return m
}

// NewRegistry returns a registry with the Go runtime and process collectors, ready for New.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a programming error: two different collectors under one name
	}
	return c
}

// UnaryServerInterceptor records duration, outcome and concurrency of every unary call.
// backendOf names the backend a request concerns (from its parameters or volume ID); nil, or
// an empty answer, records NoBackend.
func (m *Metrics) UnaryServerInterceptor(backendOf func(fullMethod string, req any) string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		op := OperationName(info.FullMethod)
		backend := ""
		if backendOf != nil {
			backend = backendOf(info.FullMethod, req)
		}
		if backend == "" {
			backend = NoBackend
		}
		inFlight := m.operationsFlight.WithLabelValues(backend, op)
		inFlight.Inc()
		defer inFlight.Dec()

		start := m.now()
		resp, err := handler(ctx, req)
		m.operationDuration.WithLabelValues(backend, op).Observe(m.now().Sub(start).Seconds())
		m.operationsTotal.WithLabelValues(backend, op, status.Code(err).String()).Inc()
		return resp, err
	}
}

// OperationName is the short method name of a full gRPC method:
// "/csi.v1.Controller/CreateVolume" -> "CreateVolume".
func OperationName(fullMethod string) string {
	if i := strings.LastIndexByte(fullMethod, '/'); i >= 0 {
		return fullMethod[i+1:]
	}
	return fullMethod
}

// SetBackendReachable records the outcome of a reachability probe of one backend.
func (m *Metrics) SetBackendReachable(backend, kind string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.backendUp.WithLabelValues(backend, kind).Set(v)
	m.backendLastProbe.WithLabelValues(backend, kind).Set(float64(m.now().UnixNano()) / 1e9)
}
