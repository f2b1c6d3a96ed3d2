package migrate

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Progress counts a run's work and, when given a writer, reports it periodically: a bar
// redrawn in place on a terminal, JSON lines otherwise.
type Progress struct {
	out io.Writer
	tty bool

	filesTotal, filesDone atomic.Int64
	bytesTotal, bytesDone atomic.Int64

	mu         sync.Mutex
	name       string
	phaseStart time.Time
	stop       chan struct{}
	stopped    chan struct{}
}

// NewProgress reports to out (nil: count only); tty selects the redrawn bar.
func NewProgress(out io.Writer, tty bool) *Progress {
	return &Progress{out: out, tty: tty, phaseStart: time.Now()}
}

// Start reports every interval until Stop.
func (p *Progress) Start(interval time.Duration) {
	if p.out == nil {
		return
	}
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.report()
			case <-p.stop:
				p.report()
				if p.tty {
					fmt.Fprintln(p.out)
				}
				return
			}
		}
	}()
}

// Stop ends the reports with a last one.
func (p *Progress) Stop() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.stopped
	p.stop = nil
}

// Snapshot is one progress report.
type Snapshot struct {
	Phase      string  `json:"phase"`
	FilesDone  int64   `json:"files_done"`
	FilesTotal int64   `json:"files_total"`
	BytesDone  int64   `json:"bytes_done"`
	BytesTotal int64   `json:"bytes_total"`
	Rate       float64 `json:"bytes_per_s"`
	FilesRate  float64 `json:"files_per_s"`
	ETA        float64 `json:"eta_s"`
}

// Snapshot returns the current figures.
func (p *Progress) Snapshot() Snapshot {
	p.mu.Lock()
	name, start := p.name, p.phaseStart
	p.mu.Unlock()
	s := Snapshot{Phase: name, FilesDone: p.filesDone.Load(), FilesTotal: p.filesTotal.Load(),
		BytesDone: p.bytesDone.Load(), BytesTotal: p.bytesTotal.Load()}
	el := time.Since(start).Seconds()
	if el > 0 {
		s.Rate, s.FilesRate = float64(s.BytesDone)/el, float64(s.FilesDone)/el
	}
	switch {
	case s.Rate > 0 && s.BytesTotal > 0:
		s.ETA = float64(s.BytesTotal-s.BytesDone) / s.Rate
	case s.FilesRate > 0:
		s.ETA = float64(s.FilesTotal-s.FilesDone) / s.FilesRate
	}
	return s
}

func (p *Progress) report() {
	s := p.Snapshot()
	if !p.tty {
		b, _ := json.Marshal(s)
		fmt.Fprintf(p.out, "%s\n", b)
		return
	}
	fmt.Fprintf(p.out, "\r\033[K%-6s %s %d/%d files  %s/%s  %s/s  %.0f files/s  ETA %s",
		s.Phase, bar(s), s.FilesDone, s.FilesTotal, HumanBytes(s.BytesDone), HumanBytes(s.BytesTotal),
		HumanBytes(int64(s.Rate)), s.FilesRate, (time.Duration(s.ETA) * time.Second).Round(time.Second))
}

func bar(s Snapshot) string {
	const width = 20
	frac := 0.0
	if s.BytesTotal > 0 {
		frac = float64(s.BytesDone) / float64(s.BytesTotal)
	} else if s.FilesTotal > 0 {
		frac = float64(s.FilesDone) / float64(s.FilesTotal)
	}
	full := min(int(frac*width), width)
	b := make([]byte, 0, width+2)
	b = append(b, '[')
	for i := 0; i < width; i++ {
		if i < full {
			b = append(b, '#')
		} else {
			b = append(b, '.')
		}
	}
	return string(append(b, ']'))
}

// HumanBytes formats a byte count with binary units.
func HumanBytes(b int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f, i := float64(b), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", b)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

func (p *Progress) phase(name string) {
	p.mu.Lock()
	p.name, p.phaseStart = name, time.Now()
	p.mu.Unlock()
	p.filesDone.Store(0)
	p.bytesDone.Store(0)
	p.filesTotal.Store(0)
	p.bytesTotal.Store(0)
}

func (p *Progress) setTotals(files, bytes int64) {
	p.filesTotal.Store(files)
	p.bytesTotal.Store(bytes)
}

func (p *Progress) fileDone()        { p.filesDone.Add(1) }
func (p *Progress) addBytes(n int64) { p.bytesDone.Add(n) }
