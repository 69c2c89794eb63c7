package vmedia

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/disk/iso9660"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// HTTPBooter implements sim.Firmware for a UEFI HTTP boot
// (BootContext.HTTPBootURI: Redfish's UefiHttp override with HttpBootUri),
// as EDK2's HttpBootDxe does it: the URI is fetched over HTTP(S); an
// ISO 9660 image is mounted as a RAM disk and boots as a CD in UEFI mode
// (Media, reading on demand as virtual media does); an EFI application
// runs — iPXE continues as the NIC's iPXE (IPXE: DHCP as iPXE, then the
// boot file it names), GRUB reads the grub.cfg beside it ($cmdpath) or
// under the server's /boot/grub and loads kernel and initrd from the
// server. Anything else fails on the console, as the firmware's loader
// does.
type HTTPBooter struct {
	// Media boots ISO images and loads what GRUB names (Exec, MaxFile);
	// its Image options fetch the URI. Required.
	Media Booter
	// IPXE runs iPXE once its EFI binary was fetched (the wiring passes the
	// PXE ROM, which is iPXE). nil => iPXE cannot run here.
	IPXE sim.Firmware
}

// maxEFIApp bounds an EFI application fetched by HTTP boot.
const maxEFIApp = 64 << 20

// grubHTTPConfigs are where GRUB fetched over HTTP finds its config: beside
// the loader ($cmdpath, as metalbed's GRUB images' early config looks),
// then under its prefix on the server.
var grubHTTPConfigs = []string{cmdpath + "grub.cfg", "boot/grub/grub.cfg", "grub/grub.cfg"}

// cmdpath starts a path httpFiles reads beside the loader.
const cmdpath = "$cmdpath/"

// Boot implements sim.Firmware.
func (h HTTPBooter) Boot(ctx context.Context, b *sim.BootContext) error {
	const what = "HTTP boot"
	say := func(format string, a ...any) { fmt.Fprintf(b.Console, format+"\r\n", a...) }
	uri := b.HTTPBootURI
	if h.Media.Exec == nil {
		return errors.New("http boot: no executor")
	}
	if u, err := url.Parse(uri); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		say("%s: %q is not an http or https URI", what, uri)
		return fmt.Errorf("%s: %q is not an http or https URI", what, uri)
	}
	say(">>Start HTTP Boot over IPv4.....")
	say("  URI: %s", uri)
	opt := h.Media.Image
	if opt.Check == nil {
		opt.Check = func() error { return nil }
	}
	img, err := OpenHTTPImage(ctx, uri, opt)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		say("  Error: Could not retrieve NBP file size from HTTP server (%v)", err)
		return fmt.Errorf("%s: %w", what, err)
	}
	defer img.Close()
	head := make([]byte, 4096)
	n, err := img.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		say("  Error: %v", err)
		return fmt.Errorf("%s %s: %w", what, uri, err)
	}
	head = head[:n]
	say("  File Size: %d Bytes", img.Size())
	switch {
	case disk.IsPE(head):
		return h.efiApp(ctx, b, img, head)
	case isISO(img):
		say("  Downloading...100%%: an ISO 9660 image; booting it as a RAM disk CD")
		mb := *b
		mb.Device = vms.BootCDROM
		mb.Media = func(dev vms.MediaDevice) string {
			if dev == vms.MediaCD {
				return uri
			}
			return ""
		}
		emit := b.Emit
		mb.Emit = func(k vms.EventKind, detail string) {
			if k != vms.EventBoot { // the firmware recorded the HTTP boot
				emit(k, detail)
			}
		}
		return h.Media.bootImage(ctx, &mb, "RAM disk CD", img, (*run).boot)
	}
	say("  Error: %s is neither an EFI application nor an ISO 9660 image", uri)
	return fmt.Errorf("%s %s: %w: neither an EFI application (PE/COFF) nor an ISO 9660 image", what, uri, ErrNotBootable)
}

// isISO reports whether img is an ISO 9660 image.
func isISO(img *HTTPImage) bool {
	_, err := iso9660.Open(img, img.Size())
	return err == nil
}

// efiApp runs the EFI application img: iPXE or GRUB.
func (h HTTPBooter) efiApp(ctx context.Context, b *sim.BootContext, img *HTTPImage, head []byte) error {
	say := func(format string, a ...any) { fmt.Fprintf(b.Console, format+"\r\n", a...) }
	uri := img.URL()
	if img.Size() > maxEFIApp {
		say("  Error: %d bytes: too large for an EFI application", img.Size())
		return fmt.Errorf("http boot %s: %w: %d bytes, too large for an EFI application", uri, ErrNotBootable, img.Size())
	}
	data := make([]byte, img.Size())
	if _, err := img.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		say("  Error: %v", err)
		return fmt.Errorf("http boot %s: %w", uri, err)
	}
	say("  Downloading...100%%")
	b.Emit(vms.EventConsole, fmt.Sprintf("nbp %s %d bytes", uri, len(data)))
	switch {
	case pxe.IsIPXE(urlPath(uri), data):
		if h.IPXE == nil {
			say("  Error: iPXE cannot run on this machine")
			return fmt.Errorf("http boot %s: %w: iPXE cannot run on this machine", uri, pxe.ErrExec)
		}
		return h.IPXE.Boot(ctx, b)
	case disk.IsGrubEFI(head):
		return h.Media.bootImage(ctx, b, "GRUB (HTTP)", img, func(r *run, ctx context.Context) error {
			e, err := r.grubFrom(httpFiles{base: uri, opt: h.Media.Image}, "", grubHTTPConfigs)
			if err != nil {
				return err
			}
			return r.load(ctx, e)
		})
	}
	say("  Error: EFI application %s is not one this firmware can run (iPXE or GRUB)", path.Base(urlPath(uri)))
	return fmt.Errorf("http boot %s: %w: an EFI application other than iPXE or GRUB", uri, pxe.ErrExec)
}

// urlPath is the path of a URL, for names.
func urlPath(uri string) string {
	if u, err := url.Parse(uri); err == nil {
		return u.Path
	}
	return uri
}

// httpFiles are the files GRUB reads after an HTTP boot from base (the
// loader's URL): "$cmdpath/NAME" beside the loader, any other path from the
// server's root — GRUB's root is then (http,host).
type httpFiles struct {
	base string
	opt  ImageOptions
}

func (f httpFiles) read(p string, limit int64) ([]byte, error) {
	base, err := url.Parse(f.base)
	if err != nil {
		return nil, err
	}
	ref := "/" + strings.TrimPrefix(p, "/")
	if name, ok := strings.CutPrefix(p, cmdpath); ok {
		ref = name
	}
	u, err := base.Parse(ref)
	if err != nil {
		return nil, err
	}
	im, err := OpenHTTPImage(context.Background(), u.String(), f.opt)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	if im.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", u, im.Size(), limit)
	}
	b := make([]byte, im.Size())
	if _, err := im.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}
