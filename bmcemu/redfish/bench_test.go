package redfish

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkSystems10000 serves 10 000 fake machines from one Server and
// reports the live heap the service costs per System (the machines' own
// bytes excluded): once built, and after a GET of every System; and the
// whole test process's RSS after those GETs. Each
// iteration is then one GET of a System over loopback (one keep-alive
// client). ci/bench/redfish.sh measures whole processes against
// sushy-tools; this isolates the Redfish service.
//
//	go test -run '^$' -bench Systems10000 ./bmcemu/redfish
func BenchmarkSystems10000(b *testing.B) {
	const n = 10000
	var cfg Config
	cfg.PlainHTTP = true
	for i := range n {
		m := newFakeMachine(fmt.Sprintf("node-%d", i), i)
		m.hw.MACs = []net.HardwareAddr{{0x52, 0x54, 0, byte(i >> 16), byte(i >> 8), byte(i)}}
		cfg.Systems = append(cfg.Systems, System{Machine: m, Username: testUser, Password: testPass})
	}
	base := liveHeap()
	srv, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(b.Context(), ln) // returns when the benchmark's context ends
	built := liveHeap()

	client := &http.Client{}
	url := "http://" + ln.Addr().String() + "/redfish/v1/Systems/"
	get := func(id string) {
		req, _ := http.NewRequestWithContext(b.Context(), http.MethodGet, url+id, nil)
		req.SetBasicAuth(testUser, testPass)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %s", id, resp.Status)
		}
	}
	for _, sys := range srv.systems {
		get(sys.id)
	}
	served := liveHeap()

	id := srv.systems[n/2].id
	for b.Loop() {
		get(id)
	}
	// After the loop: b.Loop's first call resets reported metrics.
	b.ReportMetric(float64(built-base)/n, "B/system-built")
	b.ReportMetric(float64(served-base)/n, "B/system-after-GET")
	if kb := vmRSS(); kb > 0 {
		b.ReportMetric(float64(kb)/1024, "MB-RSS")
	}
	client.CloseIdleConnections()
	runtime.KeepAlive(srv)
}

// vmRSS is this process's resident set in KiB from /proc (0 where there
// is none): the test binary, the fake machines and the service.
func vmRSS() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb
		}
	}
	return 0
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
