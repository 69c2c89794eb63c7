package scenarios

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/cucumber/godog"
)

// registerFaultHTTPSteps adds the step that moves a node's instance image
// onto the testbed's own HTTP boot server, where layer http breaks it: the
// conductor's image cache then downloads <root>/<node>/<image> from there,
// as Ironic's does from the web server an operator points it at.
func (w *world) registerFaultHTTPSteps(sc *godog.ScenarioContext) {
	sc.Given(`^the image of node "([^"]*)" is served by the testbed's HTTP boot server$`, func(ctx context.Context, name string) error {
		if err := w.needEnv(); err != nil {
			return err
		}
		if w.image == nil {
			return fmt.Errorf("no image was chosen in this scenario: give node %s instance_info first", name)
		}
		var doc struct {
			HTTPBoot struct {
				URL  string `json:"url"`
				Root string `json:"root"`
			} `json:"http_boot"`
		}
		if err := w.faultCall(ctx, http.MethodGet, "/v1/faults", nil, &doc); err != nil {
			return err
		}
		if doc.HTTPBoot.URL == "" || doc.HTTPBoot.Root == "" {
			return fmt.Errorf("GET /v1/faults names no HTTP boot server (http_boot %+v)", doc.HTTPBoot)
		}
		base := filepath.Base(w.image.path)
		dst := filepath.Join(doc.HTTPBoot.Root, name, base)
		if err := copyToHTTPBoot(w.image.path, dst); err != nil {
			return fmt.Errorf("image onto the HTTP boot server: %w", err)
		}
		return w.patchInstanceInfo(ctx, name, map[string]any{
			"image_source":   doc.HTTPBoot.URL + "/" + name + "/" + base,
			"image_checksum": w.image.md5,
		})
	})
}

func copyToHTTPBoot(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
