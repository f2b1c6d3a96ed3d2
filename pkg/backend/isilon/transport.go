package isilon

import (
	"net/http"
	"reflect"
	"unsafe"

	"github.com/dell/goisilon/api"
)

// keepConnections lets a goisilon client keep n idle connections to the array instead of
// Go's default of 2. goisilon v1.20.0 builds its own http.Transport and offers no option
// for it, so with more than 2 requests in flight every further request paid a new TCP and
// TLS handshake (most of the CPU in a burst of creates was key exchange). It reaches the
// transport through goisilon's unexported http field; it reports false, changing nothing,
// if a goisilon version lays its client out differently (TestKeepConnections then fails).
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
	t, ok := hc.Transport.(*http.Transport)
	if !ok {
		return false
	}
	t.MaxIdleConnsPerHost = n
	return true
}
