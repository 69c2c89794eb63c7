package scenarios

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"time"
)

// imageStore builds instance images with `metalbed image build` on first
// use and serves them over HTTP on loopback, as the web server Ironic
// downloads image_source from.
type imageStore struct {
	bin, dir string
	url      string // http://127.0.0.1:PORT/

	mu    sync.Mutex
	built map[string]*builtImage // by file name
}

// builtImage is one image file and what instance_info needs of it.
type builtImage struct {
	path, url, md5 string
}

// serveImages starts the HTTP server; it stops when ctx ends.
func serveImages(ctx context.Context, bin, dir string) (*imageStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("image server: %w", err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	context.AfterFunc(ctx, func() { srv.Close() })
	return &imageStore{bin: bin, dir: dir, url: "http://" + ln.Addr().String() + "/", built: map[string]*builtImage{}}, nil
}

var md5Line = regexp.MustCompile(`(?m)^md5: ([0-9a-f]{32})$`)

// image returns the image of kind ("partition" or "whole-disk") for a boot
// mode, building it once per run.
func (s *imageStore) image(ctx context.Context, kind, mode string) (*builtImage, error) {
	name := kind + ".img"
	args := []string{"image", "build", "--kind", kind}
	if kind == "whole-disk" {
		name = kind + "-" + mode + ".img"
		args = append(args, "--boot-mode", mode)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.built[name]; ok {
		return b, nil
	}
	path := filepath.Join(s.dir, name)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.bin, append(args, "--out", path)...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("metalbed image build --kind %s: %w\n%s", kind, err, out)
	}
	m := md5Line.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("metalbed image build printed no md5:\n%s", out)
	}
	b := &builtImage{path: path, url: s.url + name, md5: string(m[1])}
	s.built[name] = b
	return b, nil
}
