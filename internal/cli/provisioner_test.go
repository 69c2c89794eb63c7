package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

func TestProvisionerServe(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var out testenv.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"provisioner", "serve", "--addr", "127.0.0.1:0", "--state-dir", t.TempDir(),
			"--drivers", "fake-hardware"}, &out, io.Discard)
	}()
	re := regexp.MustCompile(`provisioner API on (http://127\.0\.0\.1:\d+)`)
	var url string
	deadline := time.Now().Add(10 * time.Second)
	for url == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address printed: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	res, err := http.Get(url + "/v1/drivers")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !bytes.Contains(body, []byte(`"fake-hardware"`)) {
		t.Fatalf("drivers: %d %s", res.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve returned %v", err)
	}
	if err := Run(t.Context(), []string{"provisioner", "serve", "--drivers", "nonesuch"}, io.Discard, io.Discard); ExitCode(err) != 2 {
		t.Fatalf("bad --drivers: %v", err)
	}
}
