package imagecache

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func hexOf(sum []byte) string { return hex.EncodeToString(sum) }

func md5hex(b []byte) string    { s := md5.Sum(b); return hexOf(s[:]) }
func sha256hex(b []byte) string { s := sha256.Sum256(b); return hexOf(s[:]) }
func sha512hex(b []byte) string { s := sha512.Sum512(b); return hexOf(s[:]) }

// imageServer serves body at /image with a Last-Modified and counts GETs
// and HEADs.
type imageServer struct {
	*httptest.Server
	gets, heads atomic.Int32
	release     chan struct{} // when set, GETs wait for it
}

func newImageServer(t *testing.T, body []byte) *imageServer {
	t.Helper()
	s := &imageServer{}
	modified := time.Now().Add(-time.Hour).UTC()
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/image" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Last-Modified", modified.Format(http.TimeFormat))
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		if r.Method == http.MethodHead {
			s.heads.Add(1)
			return
		}
		s.gets.Add(1)
		if s.release != nil {
			<-s.release
		}
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func newCache(t *testing.T, cfg Config) (*Cache, *[]Event) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "master")
	}
	var mu sync.Mutex
	var events []Event
	cfg.Observer = func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, &events
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestChecksums(t *testing.T) {
	body := []byte("a deploy kernel, or something like it\n")
	srv := newImageServer(t, body)
	url := srv.URL + "/image"
	cases := []struct {
		name string
		src  Source
		err  error
	}{
		{"md5 bare", Source{URL: url, Checksum: md5hex(body)}, nil},
		{"md5 upper case", Source{URL: url, Checksum: strings.ToUpper(md5hex(body))}, nil},
		{"sha256 prefixed", Source{URL: url, Checksum: "sha256:" + sha256hex(body)}, nil},
		{"sha512 prefixed", Source{URL: url, Checksum: "sha512:" + sha512hex(body)}, nil},
		{"os_hash sha256", Source{URL: url, HashAlgo: "sha256", HashValue: sha256hex(body)}, nil},
		{"os_hash sha512", Source{URL: url, HashAlgo: "sha512", HashValue: sha512hex(body)}, nil},
		{"os_hash md5", Source{URL: url, HashAlgo: "md5", HashValue: md5hex(body)}, nil},
		{"os_hash wins over image_checksum", Source{URL: url, Checksum: "0000", HashAlgo: "sha512", HashValue: sha512hex(body)}, nil},
		{"none", Source{URL: url}, nil},
		{"md5 mismatch", Source{URL: url, Checksum: md5hex([]byte("other"))}, ErrChecksum},
		{"sha256 mismatch", Source{URL: url, Checksum: "sha256:" + sha256hex([]byte("other"))}, ErrChecksum},
		{"sha512 mismatch", Source{URL: url, HashAlgo: "sha512", HashValue: sha512hex([]byte("other"))}, ErrChecksum},
		{"empty after prefix", Source{URL: url, Checksum: "sha256:"}, ErrChecksum},
		{"unknown algorithm", Source{URL: url, Checksum: "crc32:1234"}, ErrChecksumAlgorithm},
	}
	c, events := newCache(t, Config{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "deploy_kernel")
			err := c.Fetch(t.Context(), tc.src, dest)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Fetch = %v, want %v", err, tc.err)
			}
			if tc.err != nil {
				if _, serr := os.Stat(dest); serr == nil {
					t.Error("a failed fetch left its destination")
				}
				if !strings.Contains(err.Error(), tc.err.Error()) {
					t.Errorf("error %q lacks Ironic's text %q", err, tc.err)
				}
				return
			}
			if got := readFile(t, dest); !bytes.Equal(got, body) {
				t.Errorf("dest holds %q", got)
			}
		})
	}
	if len(*events) != len(cases) {
		t.Fatalf("%d events for %d fetches", len(*events), len(cases))
	}
	first := (*events)[0]
	if first.Source != url || first.Bytes != int64(len(body)) || first.Algo != "md5" || !first.Verified || first.Cached || first.Err != nil {
		t.Errorf("first event %+v", first)
	}
	if second := (*events)[1]; !second.Cached {
		t.Errorf("second fetch was not served from the cache: %+v", second)
	}
	if e := (*events)[9]; e.Err == nil || e.Verified {
		t.Errorf("mismatch event %+v", e)
	}
	if got := srv.gets.Load(); got != 4 {
		// One download, plus one per mismatch found on the cached copy
		// (md5, sha256, sha512): the cache retries before failing.
		t.Errorf("%d downloads, want 4", got)
	}
}

func TestMismatchOnCachedCopyDownloadsAgain(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "img")
	os.WriteFile(src, []byte("old"), 0o644)
	c, _ := newCache(t, Config{})
	if err := c.Fetch(t.Context(), Source{URL: src}, filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	// The source changes but keeps an old mtime (as a copy with -p would):
	// the checksum of the new bytes must still be honoured.
	os.WriteFile(src, []byte("new"), 0o644)
	old := time.Now().Add(-24 * time.Hour)
	os.Chtimes(src, old, old)
	if err := c.Fetch(t.Context(), Source{URL: src, Checksum: md5hex([]byte("new"))}, filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "b")); string(got) != "new" {
		t.Errorf("got %q", got)
	}
}

func TestConcurrentFetchDownloadsOnce(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	srv := newImageServer(t, body)
	srv.release = make(chan struct{})
	c, events := newCache(t, Config{})
	dir := t.TempDir()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Fetch(t.Context(), Source{URL: srv.URL + "/image", Checksum: "sha256:" + sha256hex(body)}, filepath.Join(dir, fmt.Sprint(i)))
		}()
	}
	// Let the download finish once every caller is waiting on it.
	deadline := time.Now().Add(10 * time.Second)
	for srv.gets.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(srv.release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if got := readFile(t, filepath.Join(dir, fmt.Sprint(i))); !bytes.Equal(got, body) {
			t.Fatalf("dest %d differs", i)
		}
	}
	if got := srv.gets.Load(); got != 1 {
		t.Errorf("%d downloads for %d concurrent fetches, want 1", got, n)
	}
	// Destinations are hard links to one master.
	a, _ := os.Stat(filepath.Join(dir, "0"))
	b, _ := os.Stat(filepath.Join(dir, "7"))
	if !os.SameFile(a, b) {
		t.Error("destinations are not links to the master")
	}
	// A later fetch only revalidates (HEAD), it does not download.
	if err := c.Fetch(t.Context(), Source{URL: srv.URL + "/image"}, filepath.Join(dir, "later")); err != nil {
		t.Fatal(err)
	}
	if got := srv.gets.Load(); got != 1 {
		t.Errorf("cached image downloaded again (%d GETs)", got)
	}
	if srv.heads.Load() == 0 {
		t.Error("cached HTTP image not revalidated with HEAD")
	}
	if last := (*events)[len(*events)-1]; !last.Cached || last.Bytes != int64(len(body)) {
		t.Errorf("last event %+v", last)
	}
}

func TestPartialDownloadLeavesNoEntry(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", "100000")
			return
		}
		hits.Add(1)
		w.Header().Set("Content-Length", "100000")
		w.Write(bytes.Repeat([]byte("x"), 30000))
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // the server drops mid-body
		}
	}))
	defer srv.Close()
	c, events := newCache(t, Config{})
	dest := filepath.Join(t.TempDir(), "ramdisk")
	err := c.Fetch(t.Context(), Source{URL: srv.URL + "/image"}, dest)
	if err == nil {
		t.Fatal("a truncated download succeeded")
	}
	if _, serr := os.Stat(dest); serr == nil {
		t.Error("destination created from a truncated download")
	}
	des, _ := os.ReadDir(c.cfg.Dir)
	for _, de := range des {
		t.Errorf("cache dir holds %s after a failed download", de.Name())
	}
	if len(*events) != 1 || (*events)[0].Err == nil {
		t.Errorf("events %+v", *events)
	}
	// The next attempt downloads again rather than using a partial entry.
	c.Fetch(t.Context(), Source{URL: srv.URL + "/image"}, dest)
	if hits.Load() != 2 {
		t.Errorf("%d GETs, want 2", hits.Load())
	}
}

func TestFileAndPathSources(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "vmlinuz")
	os.WriteFile(src, []byte("kernel v1"), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(src, old, old)
	c, events := newCache(t, Config{})
	for _, u := range []string{src, "file://" + src} {
		dest := filepath.Join(dir, "out-"+fmt.Sprint(len(*events)))
		if err := c.Fetch(t.Context(), Source{URL: u, Checksum: md5hex([]byte("kernel v1"))}, dest); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if got := readFile(t, dest); string(got) != "kernel v1" {
			t.Errorf("%s: %q", u, got)
		}
	}
	// Same path again: a cache hit.
	dest := filepath.Join(dir, "again")
	if err := c.Fetch(t.Context(), Source{URL: src}, dest); err != nil {
		t.Fatal(err)
	}
	if e := (*events)[2]; !e.Cached {
		t.Errorf("second fetch of %s not cached: %+v", src, e)
	}
	// The source changes: the stale master is replaced, and the link too.
	os.WriteFile(src, []byte("kernel v2"), 0o644)
	future := time.Now().Add(time.Hour)
	os.Chtimes(src, future, future)
	if err := c.Fetch(t.Context(), Source{URL: src}, dest); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, dest); string(got) != "kernel v2" {
		t.Errorf("after the source changed, dest holds %q", got)
	}
	for _, bad := range []string{"relative/path", "ftp://x/y", "glance://uuid", ""} {
		if err := c.Fetch(t.Context(), Source{URL: bad}, filepath.Join(dir, "bad")); err == nil {
			t.Errorf("source %q accepted", bad)
		}
	}
	if err := c.Fetch(t.Context(), Source{URL: filepath.Join(dir, "missing")}, filepath.Join(dir, "bad")); err == nil {
		t.Error("missing file fetched")
	}
}

func TestEvictionLRUByAccessTime(t *testing.T) {
	dir := t.TempDir()
	c, _ := newCache(t, Config{MaxBytes: 250})
	var masters []string
	for i := range 3 {
		src := filepath.Join(dir, fmt.Sprintf("img%d", i))
		os.WriteFile(src, bytes.Repeat([]byte{byte('a' + i)}, 100), 0o644)
		dest := filepath.Join(dir, fmt.Sprintf("node%d", i))
		if err := c.Fetch(t.Context(), Source{URL: src}, dest); err != nil {
			t.Fatal(err)
		}
		masters = append(masters, filepath.Join(c.cfg.Dir, masterName(src)))
	}
	// All three are linked into node dirs: in use, none evicted though
	// the cache holds 300 bytes for a 250-byte bound.
	for _, m := range masters {
		if _, err := os.Stat(m); err != nil {
			t.Fatalf("master in use was evicted: %v", err)
		}
	}
	// The nodes are cleaned up; img1 was used last, img0 longest ago.
	for i := range 3 {
		os.Remove(filepath.Join(dir, fmt.Sprintf("node%d", i)))
	}
	now := time.Now()
	for i, age := range []time.Duration{3 * time.Hour, time.Minute, 2 * time.Hour} {
		st, _ := os.Stat(masters[i])
		os.Chtimes(masters[i], now.Add(-age), st.ModTime())
	}
	c.CleanUp()
	if _, err := os.Stat(masters[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("least recently used master survived (%v)", err)
	}
	for _, i := range []int{1, 2} {
		if _, err := os.Stat(masters[i]); err != nil {
			t.Errorf("master %d evicted: %v", i, err)
		}
	}
	if _, err := os.Stat(masters[0] + ".json"); !errors.Is(err, os.ErrNotExist) {
		t.Error("evicted master's metadata left behind")
	}
	entries, err := c.Entries()
	if err != nil || len(entries) != 2 || entries[0].Path != masters[2] {
		t.Errorf("entries %+v, %v", entries, err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without Dir succeeded")
	}
	if _, err := New(Config{Dir: "x", MaxBytes: -1}); err == nil {
		t.Error("negative MaxBytes accepted")
	}
}

// TestCopyAcrossFilesystems: a destination on another filesystem gets a
// copy, since a hard link cannot cross.
func TestCopyAcrossFilesystems(t *testing.T) {
	other, err := os.MkdirTemp("/dev/shm", "imagecache-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	c, _ := newCache(t, Config{})
	src := filepath.Join(t.TempDir(), "img")
	os.WriteFile(src, []byte("bytes"), 0o644)
	dest := filepath.Join(other, "img")
	if err := c.Fetch(t.Context(), Source{URL: src}, dest); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, dest); string(got) != "bytes" {
		t.Errorf("copy holds %q", got)
	}
	master, _ := os.Stat(filepath.Join(c.cfg.Dir, masterName(src)))
	d, _ := os.Stat(dest)
	if os.SameFile(master, d) {
		t.Skip("/dev/shm is on the same filesystem as the cache: no copy needed")
	}
	if des, _ := os.ReadDir(other); len(des) != 1 {
		t.Errorf("temporary files left next to the copy: %v", des)
	}
}
