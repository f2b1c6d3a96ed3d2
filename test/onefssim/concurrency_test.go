package onefssim

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNamespaceWritesDoNotWaitForEachOther: OneFS makes directories and writes files of
// different paths side by side (its locks are per inode), so a directory is made while
// another client's upload is still streaming in. The simulator held its one lock for every
// namespace PUT, body included: the directory waited for the upload to end.
func TestNamespaceWritesDoNotWaitForEachOther(t *testing.T) {
	sim, u := newSim(t, nil)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	body, feed := io.Pipe()
	upload, err := http.NewRequest(http.MethodPut, u+"/namespace/ifs/data/csi/big", body)
	if err != nil {
		t.Fatal(err)
	}
	upload.SetBasicAuth(testUser, testPass)
	upload.Header.Set("x-isi-ifs-target-type", "object")
	uploaded := make(chan error, 1)
	go func() {
		res, err := hc.Do(upload)
		if err == nil {
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				err = fmt.Errorf("upload: HTTP %d", res.StatusCode)
			}
		}
		uploaded <- err
	}()
	go func() { _, _ = feed.Write([]byte("the first part of a large file")) }()
	// The file exists once the upload's handler streams its body into it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(sim.Root(), "data", "csi", "big")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			feed.Close()
			t.Fatal("the upload did not start within 10s")
		}
	}
	made := make(chan int, 1)
	go func() {
		status, _, _ := rawDo(t, http.MethodPut, u+"/namespace/ifs/data/csi/dir", map[string]string{"x-isi-ifs-target-type": "container"}, "")
		made <- status
	}()
	var status int
	select {
	case status = <-made:
	case <-time.After(5 * time.Second):
		t.Errorf("a directory was not made within 5s while another client's upload was streaming")
	}
	feed.Close()
	if err := <-uploaded; err != nil {
		t.Fatal(err)
	}
	if status == 0 {
		status = <-made
	}
	if status != http.StatusOK {
		t.Fatalf("directory: HTTP %d, want 200", status)
	}
}

// TestConcurrentCreatesOfOneDirectory: of clients creating the same directory at once
// without overwrite, one makes it and every other is told it exists (403 AEC_FORBIDDEN, as
// OneFS answers), none fails otherwise; with overwrite all succeed.
func TestConcurrentCreatesOfOneDirectory(t *testing.T) {
	_, u := newSim(t, nil)
	for _, overwrite := range []string{"false", "true"} {
		const n = 16
		statuses := make(chan int, n)
		bodies := make(chan string, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, _, b := rawDo(t, http.MethodPut, u+"/namespace/ifs/data/csi/same-"+overwrite+"?overwrite="+overwrite,
					map[string]string{"x-isi-ifs-target-type": "container", "x-isi-ifs-attr-owner": "x"}, "")
				statuses <- status
				bodies <- string(b)
			}()
		}
		wg.Wait()
		close(statuses)
		close(bodies)
		count := map[int]int{}
		for s := range statuses {
			count[s]++
		}
		for b := range bodies {
			if b != "" && !strings.Contains(b, "already exists") {
				t.Errorf("overwrite=%s: answer %s", overwrite, b)
			}
		}
		want := map[int]int{200: 1, 403: n - 1}
		if overwrite == "true" {
			want = map[int]int{200: n}
		}
		if fmt.Sprint(count) != fmt.Sprint(want) {
			t.Errorf("overwrite=%s: %d concurrent creates of one directory answered %v, want %v", overwrite, n, count, want)
		}
		status, _, b := rawDo(t, http.MethodGet, u+"/namespace/ifs/data/csi/same-"+overwrite+"?metadata", nil, "")
		if status != 200 || !strings.Contains(string(b), `"OWNER"`) && !strings.Contains(string(b), `"owner"`) {
			t.Errorf("overwrite=%s: the directory's attribute is lost: HTTP %d %s", overwrite, status, b)
		}
	}
}

// TestSlowBodyHoldsNobodyUp: OneFS serves each request in a worker of its own, so a client
// slow to send a Platform API body (a quota's POST here) holds up no other client. The
// simulator read such bodies under its one lock: every other request, namespace creates
// included, waited for the slow client (issue 15).
func TestSlowBodyHoldsNobodyUp(t *testing.T) {
	sim, u := newSim(t, nil)
	for _, d := range []string{"slow", "quick"} {
		if status, _, b := rawDo(t, http.MethodPut, u+"/namespace/ifs/data/"+d+"?recursive=true", map[string]string{"x-isi-ifs-target-type": "container"}, ""); status != 200 {
			t.Fatalf("mkdir %s: HTTP %d %s", d, status, b)
		}
	}
	arrived := make(chan struct{})
	var once sync.Once
	sim.SetRequestHook(func(r *http.Request) {
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/quota/quotas") && r.Header.Get("X-Slow") != "" {
			once.Do(func() { close(arrived) })
		}
	})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	body, feed := io.Pipe()
	slow, err := http.NewRequest(http.MethodPost, u+"/platform/1/quota/quotas", body)
	if err != nil {
		t.Fatal(err)
	}
	slow.SetBasicAuth(testUser, testPass)
	slow.Header.Set("X-Slow", "1")
	posted := make(chan int, 1)
	go func() {
		res, err := hc.Do(slow)
		if err != nil {
			t.Error(err)
			posted <- 0
			return
		}
		res.Body.Close()
		posted <- res.StatusCode
	}()
	go func() { _, _ = feed.Write([]byte(`{"path":"/ifs/data/slow","type":"directory",`)) }()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		feed.Close()
		t.Fatal("the slow quota request did not arrive within 10s")
	}
	time.Sleep(50 * time.Millisecond) // its handler starts on its body
	type answer struct {
		what   string
		status int
	}
	answers := make(chan answer, 3)
	for _, r := range []struct{ what, method, url, body string }{
		{"a directory", http.MethodPut, "/namespace/ifs/data/quick/dir", ""},
		{"another quota", http.MethodPost, "/platform/1/quota/quotas", `{"path":"/ifs/data/quick","type":"directory"}`},
		{"an export", http.MethodPost, "/platform/2/protocols/nfs/exports", `{"paths":["/ifs/data/quick"]}`},
	} {
		go func() {
			status, _, _ := rawDo(t, r.method, u+r.url, map[string]string{"x-isi-ifs-target-type": "container"}, r.body)
			answers <- answer{r.what, status}
		}()
	}
	timeout := time.After(5 * time.Second)
	waiting := 3
wait:
	for ; waiting > 0; waiting-- {
		select {
		case a := <-answers:
			if a.status != 200 && a.status != 201 {
				t.Errorf("%s: HTTP %d", a.what, a.status)
			}
		case <-timeout:
			t.Errorf("%d requests of other clients were not answered within 5s while a quota request's body was still arriving", waiting)
			break wait
		}
	}
	_, _ = feed.Write([]byte(`"thresholds":{"hard":1000}}`))
	feed.Close()
	for ; waiting > 0; waiting-- {
		<-answers
	}
	if status := <-posted; status != http.StatusCreated {
		t.Fatalf("the slow quota request: HTTP %d, want 201", status)
	}
}
