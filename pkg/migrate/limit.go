package migrate

import (
	"sync"
	"time"
)

// limiter is a token bucket on bytes read from the source (--bwlimit); nil means no limit.
type limiter struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newLimiter(bytesPerSecond int64) *limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	r := float64(bytesPerSecond)
	return &limiter{rate: r, tokens: r, last: time.Now()}
}

// wait blocks until n bytes may be read; a burst is at most one second's worth.
func (l *limiter) wait(n int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	now := time.Now()
	l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens -= float64(n)
	debt := l.tokens
	l.mu.Unlock()
	if debt < 0 {
		time.Sleep(time.Duration(-debt / l.rate * float64(time.Second)))
	}
}
