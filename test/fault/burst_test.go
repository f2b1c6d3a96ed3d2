package fault

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
)

// burst drives a plugin the way external-provisioner does: many requests at once, each
// with its own deadline, each retried with backoff until it succeeds.
type burst struct {
	ctrl        csi.ControllerClient
	backend     string
	tenant      string
	prefix      string
	n           int
	concurrency int
	deadline    time.Duration // one call's deadline (the sidecar's --timeout)
	budget      time.Duration // how long one volume's retries may take in all
	bytes       int64

	mu     sync.Mutex
	errors map[string]int // "Method code" -> count, for the log
	last   time.Time      // when the last call of the burst succeeded
	done   atomic.Int64   // calls of the current phase that succeeded
}

// final codes are answers a CO does not expect to go away by retrying.
var final = map[codes.Code]bool{
	codes.InvalidArgument: true, codes.AlreadyExists: true, codes.OutOfRange: true,
	codes.FailedPrecondition: true, codes.Unimplemented: true, codes.PermissionDenied: true,
}

func (b *burst) retry(method string, call func(ctx context.Context) error) error {
	backoff := 500 * time.Millisecond
	end := time.Now().Add(b.budget)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), b.deadline)
		err := call(ctx)
		cancel()
		if err == nil {
			b.done.Add(1)
			b.mu.Lock()
			b.last = time.Now()
			b.mu.Unlock()
			return nil
		}
		code := status.Code(err)
		b.mu.Lock()
		b.errors[method+" "+code.String()]++
		b.mu.Unlock()
		if final[code] {
			return fmt.Errorf("%s: final error: %v", method, err)
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s: still failing after %s: %v", method, b.budget, err)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (b *burst) name(i int) string { return fmt.Sprintf("%s-%03d", b.prefix, i) }

// each runs fn for 0..n-1 on b.concurrency workers and returns the first error.
func (b *burst) each(n int, fn func(i int) error) error {
	b.done.Store(0)
	work := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for w := 0; w < b.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := fn(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	var all []string
	for err := range errs {
		all = append(all, err.Error())
	}
	if len(all) > 0 {
		return fmt.Errorf("%d of %d failed; first: %s", len(all), n, all[0])
	}
	return nil
}

func (b *burst) createVolume(ctx context.Context, name string) (string, error) {
	resp, err := b.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name:          name,
		CapacityRange: &csi.CapacityRange{RequiredBytes: b.bytes},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}},
		Parameters: map[string]string{"backend": b.backend, backend.ParamPVCNamespace: b.tenant},
	})
	if err != nil {
		return "", err
	}
	return resp.GetVolume().GetVolumeId(), nil
}

// createAll creates n volumes and returns their IDs.
func (b *burst) createAll() ([]string, error) {
	ids := make([]string, b.n)
	err := b.each(b.n, func(i int) error {
		return b.retry("CreateVolume", func(ctx context.Context) (err error) {
			ids[i], err = b.createVolume(ctx, b.name(i))
			return err
		})
	})
	return ids, err
}

// deleteAll deletes the volumes until each delete succeeds.
func (b *burst) deleteAll(ids []string) error {
	return b.each(len(ids), func(i int) error {
		if ids[i] == "" {
			return nil
		}
		return b.retry("DeleteVolume", func(ctx context.Context) error {
			_, err := b.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: ids[i]})
			return err
		})
	})
}

// whenDone calls fn once, after `at` calls of the running phase succeeded.
func (b *burst) whenDone(at int, fn func()) (stop func()) {
	quit := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if b.done.Load() >= int64(at) {
					fn()
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit) }) }
}

func (b *burst) errorSummary() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var parts []string
	for k, v := range b.errors {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// during runs phase with the freeze set off once a quarter of its calls succeeded, if armed.
func (b *burst) during(armed bool, freeze func(), phase func() ([]string, error)) ([]string, error) {
	b.done.Store(0)
	if armed {
		stop := b.whenDone(max(1, b.n/4), freeze)
		defer stop()
	}
	return phase()
}

// whileFrozen keeps the CO busy until thawed: waves of a quarter burst, each created and
// deleted, so that requests keep meeting the frozen daemon for the whole freeze. It
// returns the number of waves.
func (b *burst) whileFrozen(thawed <-chan struct{}) int {
	waves := 0
	for {
		select {
		case <-thawed:
			return waves
		default:
		}
		waves++
		w := &burst{ctrl: b.ctrl, backend: b.backend, tenant: b.tenant, prefix: fmt.Sprintf("%s-wave%d", b.prefix, waves),
			n: max(1, b.n/4), concurrency: b.concurrency, deadline: b.deadline, budget: b.budget, bytes: b.bytes, errors: b.errors}
		ids, err := w.createAll()
		if err == nil {
			err = w.deleteAll(ids)
		}
		if err != nil {
			b.mu.Lock()
			b.errors["wave failed: "+err.Error()]++
			b.mu.Unlock()
		}
		b.mu.Lock()
		if !w.last.IsZero() {
			b.last = w.last
		}
		b.mu.Unlock()
	}
}

// pollCapacity calls GetCapacity every second, as external-provisioner's capacity tracking
// does (it asks the monitors for df), until the returned func is called; that func says
// how the calls went.
func (b *burst) pollCapacity() func() string {
	quit := make(chan struct{})
	var ok, failed atomic.Int64
	go func() {
		for {
			select {
			case <-quit:
				return
			case <-time.After(time.Second):
			}
			ctx, cancel := context.WithTimeout(context.Background(), b.deadline)
			_, err := b.ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: map[string]string{"backend": b.backend}})
			cancel()
			if err != nil {
				failed.Add(1)
			} else {
				ok.Add(1)
			}
		}
	}()
	return func() string {
		close(quit)
		return fmt.Sprintf("%d answered, %d failed", ok.Load(), failed.Load())
	}
}
