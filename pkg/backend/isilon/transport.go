package isilon

import (
	"io"
	"net/http"
	"reflect"
	"unsafe"

	"github.com/dell/goisilon/api"
)

// keepConnections lets a goisilon client keep n idle connections to the array instead of
// Go's default of 2, and keep each connection after an answer it does not read. goisilon
// v1.20.0 builds its own http.Transport and offers no option for either, so with more than
// 2 requests in flight every further request paid a new TCP and TLS handshake (most of the
// CPU in a burst of creates was key exchange), and so did the request after one whose
// answer goisilon closes unread (a quota's POST, answered with its ID): Go's transport
// drops a connection whose answer was not read to its end. It reaches the transport
// through goisilon's unexported http field; it reports false, changing nothing, if a
// goisilon version lays its client out differently (TestKeepConnections then fails).
func keepConnections(cl api.Client, n int) bool {
	v := reflect.ValueOf(cl)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return false
	}
	f := v.Elem().FieldByName("http")
	if !f.IsValid() || f.Type() != reflect.TypeOf((*http.Client)(nil)) || f.IsNil() {
		return false
	}
	hc := (*http.Client)(unsafe.Pointer(f.Pointer()))
	var t *http.Transport
	switch rt := hc.Transport.(type) {
	case *http.Transport:
		t = rt
	case readAnswers:
		t = rt.t
	default:
		return false
	}
	t.MaxIdleConnsPerHost = n
	hc.Transport = readAnswers{t}
	return true
}

// maxUnreadAnswer is how much of an answer left unread is read when it is closed, so the
// connection is kept; a longer rest is dropped with the connection, as before.
const maxUnreadAnswer = 64 << 10

// readAnswers is a transport whose answers are read to their end when closed.
type readAnswers struct{ t *http.Transport }

func (r readAnswers) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.t.RoundTrip(req)
	if err == nil && resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = &readOnClose{resp.Body}
	}
	return resp, err
}

// readOnClose reads what is left of an answer (up to maxUnreadAnswer) before closing it.
type readOnClose struct{ io.ReadCloser }

func (b *readOnClose) Close() error {
	_, _ = io.CopyN(io.Discard, b.ReadCloser, maxUnreadAnswer)
	return b.ReadCloser.Close()
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the transport.
func (r readAnswers) CloseIdleConnections() { r.t.CloseIdleConnections() }
