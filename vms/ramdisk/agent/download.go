package agent

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
)

// hashFor returns the hash IPA verifies an image with: os_hash_algo when
// this agent has it, else md5 of the legacy checksum field.
func hashFor(info *imageInfo) (hash.Hash, string, error) {
	if info.OSHashAlgo != "" {
		if h := newHash(info.OSHashAlgo); h != nil {
			return h, info.OSHashValue, nil
		}
	}
	if info.Checksum != "" {
		return md5.New(), info.Checksum, nil
	}
	return nil, "", errGeneric(fmt.Sprintf("Unable to verify image %s with available checksums. Please make sure the specified 'os_hash_algo' (currently %s) is supported by this ramdisk, or provide a md5 checksum via the 'checksum' field",
		info.ID, info.OSHashAlgo))
}

func newHash(algo string) hash.Hash {
	switch strings.ToLower(algo) {
	case "md5":
		return md5.New()
	case "sha1":
		return sha1.New()
	case "sha224":
		return sha256.New224()
	case "sha256":
		return sha256.New()
	case "sha384":
		return sha512.New384()
	case "sha512":
		return sha512.New()
	}
	return nil
}

// expectedChecksum resolves a checksum given as a URL of a checksums file
// (IPA's _fetch_checksum).
func (a *Agent) expectedChecksum(ctx context.Context, info *imageInfo, sum string) (string, error) {
	if !strings.HasPrefix(sum, "http://") && !strings.HasPrefix(sum, "https://") {
		return strings.ToLower(strings.TrimSpace(sum)), nil
	}
	body, err := a.openURL(ctx, info.ID, sum)
	if err != nil {
		return "", err
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, 1<<20))
	if err != nil {
		return "", errImageDownload(sum, err.Error())
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "", errImageDownload(sum, "Empty checksum file")
	}
	if len(lines) == 1 && !strings.Contains(lines[0], " ") {
		return strings.ToLower(lines[0]), nil
	}
	want := ""
	if len(info.URLs) > 0 {
		if u, err := url.Parse(info.URLs[0]); err == nil {
			want = path.Base(u.Path)
		}
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 2 && strings.TrimLeft(f[len(f)-1], "*") == want {
			return strings.ToLower(f[0]), nil
		}
	}
	return "", errImageDownload(sum, "Checksum file does not contain name "+want)
}

// openURL starts a download; non-200 answers are IPA's ImageDownloadError.
func (a *Agent) openURL(ctx context.Context, imageID, u string) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, errImageDownload(imageID, err.Error())
	}
	// The connection and the wait for headers get the stall timeout too.
	t := time.AfterFunc(a.cfg.DownloadTimeout, cancel)
	resp, err := a.cfg.HTTP.Do(req)
	t.Stop()
	if err != nil {
		cancel()
		return nil, errImageDownload(imageID, err.Error())
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		cancel()
		return nil, errImageDownload(imageID, fmt.Sprintf("Received status code %d from %s, expected 200. Response body: %s", resp.StatusCode, u, b))
	}
	return newStallReader(resp.Body, a.cfg.DownloadTimeout, cancel), nil
}

// openImage tries the image's URLs in order.
func (a *Agent) openImage(ctx context.Context, info *imageInfo) (io.ReadCloser, error) {
	var details []string
	start := time.Now()
	for _, u := range info.URLs {
		a.say("attempting to download image from %s", u)
		body, err := a.openURL(ctx, info.ID, u)
		if err == nil {
			return body, nil
		}
		details = append(details, fmt.Sprintf("URL: %s; time: %.3f seconds. Error: %v", u, time.Since(start).Seconds(), err))
	}
	return nil, errImageDownload(info.ID, strings.Join(details, "\n "))
}

// errStalled is a download that delivered nothing for DownloadTimeout.
var errStalled = errors.New("Timed out reading next chunk from webserver")

// stallReader cancels a download whose data stops coming.
type stallReader struct {
	rc      io.ReadCloser
	timeout time.Duration
	cancel  context.CancelFunc
	timer   *time.Timer
	mu      sync.Mutex
	stalled bool
}

func newStallReader(rc io.ReadCloser, timeout time.Duration, cancel context.CancelFunc) *stallReader {
	s := &stallReader{rc: rc, timeout: timeout, cancel: cancel}
	s.timer = time.AfterFunc(timeout, func() {
		s.mu.Lock()
		s.stalled = true
		s.mu.Unlock()
		cancel()
	})
	return s
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	if n > 0 {
		s.timer.Reset(s.timeout)
	}
	if err != nil && err != io.EOF {
		s.mu.Lock()
		stalled := s.stalled
		s.mu.Unlock()
		if stalled {
			return n, errStalled
		}
	}
	return n, err
}

func (s *stallReader) Close() error {
	s.timer.Stop()
	err := s.rc.Close()
	s.cancel()
	return err
}

// hashingReader hashes what passes through.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }
