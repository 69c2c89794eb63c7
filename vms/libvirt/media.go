//go:build libvirt_dlopen

package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	golibvirt "libvirt.org/go/libvirt"

	"github.com/metalbed/metalbed/vms"
)

// maxMedia caps an inserted image: a deploy ISO is tens of MiB, a
// distribution's some GiB.
const maxMedia = 8 << 30

var _ vms.MediaMachine = (*Machine)(nil)

// InsertMedia implements vms.MediaMachine for the CD drive: the image is
// fetched (http or https) into a file beside the disk, since QEMU's own
// network block drivers are not in every build, and put in the domain's
// SATA CD drive — in its definition, and in the running domain's tray too.
// A USB stick is not modelled on VMs yet.
func (m *Machine) InsertMedia(ctx context.Context, dev vms.MediaDevice, imageURL string) error {
	if err := m.checkOpen(); err != nil {
		return err
	}
	if dev != vms.MediaCD {
		return fmt.Errorf("libvirt machine %s: virtual media %q: only the CD drive is modelled on VMs", m.cfg.Name, dev)
	}
	if !strings.HasPrefix(imageURL, "http://") && !strings.HasPrefix(imageURL, "https://") {
		return fmt.Errorf("libvirt machine %s: image %q: want an http or https URL", m.cfg.Name, imageURL)
	}
	file := filepath.Join(filepath.Dir(m.cfg.Disk), m.cfg.Name+"-cd.iso")
	if err := fetchImage(ctx, m.cfg.Dial, imageURL, file); err != nil {
		return fmt.Errorf("libvirt machine %s: insert %s: %w", m.cfg.Name, imageURL, err)
	}
	if err := m.setCDROM(imageURL, file); err != nil {
		return err
	}
	m.cfg.Logger.Info("virtual media inserted", "node", m.cfg.Name, "event", "insert-media", "image", imageURL)
	return nil
}

// EjectMedia implements vms.MediaMachine: the CD drive's tray is emptied.
func (m *Machine) EjectMedia(ctx context.Context, dev vms.MediaDevice) error {
	if err := m.checkOpen(); err != nil {
		return err
	}
	if dev != vms.MediaCD {
		return nil // nothing was ever inserted there
	}
	m.mu.Lock()
	old := m.cdFile
	m.mu.Unlock()
	if err := m.setCDROM("", ""); err != nil {
		return err
	}
	if old != "" {
		os.Remove(old)
	}
	m.cfg.Logger.Info("virtual media ejected", "node", m.cfg.Name, "event", "eject-media")
	return nil
}

// Media implements vms.MediaMachine.
func (m *Machine) Media(ctx context.Context, dev vms.MediaDevice) (string, error) {
	if err := m.checkOpen(); err != nil {
		return "", err
	}
	if dev != vms.MediaCD {
		return "", nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cdURL, nil
}

// setCDROM redefines the domain with file in its CD drive ("" = empty)
// and changes the running domain's tray to match.
func (m *Machine) setCDROM(url, file string) error {
	m.powerMu.Lock()
	defer m.powerMu.Unlock()
	m.mu.Lock()
	m.cdURL, m.cdFile = url, file
	f := m.flags
	m.mu.Unlock()
	if err := m.define(f); err != nil {
		return err
	}
	running, err := m.running()
	if err != nil || !running {
		return err
	}
	dom, err := m.domain()
	if err != nil {
		return err
	}
	defer dom.Free()
	src := ""
	if file != "" {
		src = fmt.Sprintf("<source file=%q/>", file)
	}
	doc := `<disk type="file" device="cdrom"><driver name="qemu" type="raw"/>` + src + `<target dev="sda" bus="sata"/><readonly/></disk>`
	if err := dom.UpdateDeviceFlags(doc, golibvirt.DOMAIN_DEVICE_MODIFY_LIVE); err != nil {
		if still, rerr := m.running(); rerr == nil && !still {
			return nil // it powered off meanwhile: the definition holds the change
		}
		return fmt.Errorf("libvirt machine %s: change the CD in the running domain: %w", m.cfg.Name, err)
	}
	return nil
}

// fetchImage downloads url into file (through a temporary file beside it),
// connecting with dial (nil: the default transport's dialer).
func fetchImage(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := http.DefaultClient
	if dial != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = dial
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET: %s", resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".media-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, io.LimitReader(resp.Body, maxMedia+1))
	if err == nil && n > maxMedia {
		err = fmt.Errorf("image larger than %d bytes", int64(maxMedia))
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && n == 0 {
		err = errors.New("empty image")
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}
