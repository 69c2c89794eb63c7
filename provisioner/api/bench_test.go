package api_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

func benchGet(b *testing.B, url string) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.78")
	for b.Loop() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}

// BenchmarkNodeShow measures GET /v1/nodes/<name> over loopback HTTP.
func BenchmarkNodeShow(b *testing.B) {
	s := newStackB(b)
	s.mustB(b, "POST", "/v1/nodes", `{"driver":"fake-hardware","name":"n0"}`)
	benchGet(b, s.url+"/v1/nodes/n0")
}

// BenchmarkNodeListDetail100 measures GET /v1/nodes/detail with 100 nodes.
func BenchmarkNodeListDetail100(b *testing.B) {
	s := newStackB(b)
	for i := range 100 {
		s.mustB(b, "POST", "/v1/nodes", fmt.Sprintf(`{"driver":"fake-hardware","name":"n%d"}`, i))
	}
	benchGet(b, s.url+"/v1/nodes/detail")
}
