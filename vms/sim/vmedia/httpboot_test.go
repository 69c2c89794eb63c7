package vmedia_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/pxe"
	"github.com/metalbed/metalbed/vms/sim/vmedia"
)

// serveFiles serves files by path with Range support; others are 404.
func serveFiles(t *testing.T, files map[string][]byte) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(b))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// httpBootCtx is a UEFI HTTP boot of uri.
func httpBootCtx(mode vms.BootMode, uri string) (*sim.BootContext, *testenv.SyncBuffer, *booted) {
	b, con, got := bootCtx(mode, vms.BootPXE, nil)
	b.HTTPBootURI = uri
	return b, con, got
}

// TestHTTPBoot boots what UEFI HTTP boot fetches: GRUB built with
// grub-mkimage (its grub.cfg beside it, kernel and initrd from the
// server's root), an ISO (as a RAM disk CD); iPXE's EFI binary without a
// ROM to continue as, other files, a 404 and an unusable URI fail with the reason.
func TestHTTPBoot(t *testing.T) {
	testenv.RequireTool(t, "grub-mkimage", "grub-common")
	g, err := disk.MakeGrubImages(t.Context(), "")
	if err != nil || len(g.EFI) == 0 {
		testenv.Unavailable(t, "GRUB EFI image (grub-efi-amd64-bin): "+errString(err))
	}
	testenv.RequireFile(t, "/usr/lib/ipxe/ipxe.efi", "ipxe")
	ipxe, err := os.ReadFile("/usr/lib/ipxe/ipxe.efi")
	if err != nil {
		t.Fatal(err)
	}
	notIPXE := bytes.Clone(g.EFI[:4096]) // a PE/COFF header without GRUB's mods section
	copy(notIPXE[bytes.Index(notIPXE, []byte("mods")):], "data")
	srv := serveFiles(t, map[string][]byte{
		"/EFI/BOOT/grubx64.efi": g.EFI, "/EFI/BOOT/grub.cfg": []byte(grubCfg),
		"/vmlinuz": bzImage(), "/initrd": initrd,
		"/deploy.iso": ironicISO(t, false, true), "/ipxe.efi": ipxe,
		"/other.efi": notIPXE, "/notes.txt": []byte("hello"),
	})

	t.Run("grub", func(t *testing.T) {
		b, con, got := httpBootCtx(vms.UEFI, srv+"/EFI/BOOT/grubx64.efi")
		if err := (vmedia.HTTPBooter{Media: booter(got)}).Boot(t.Context(), b); err != nil {
			t.Fatalf("boot: %v\n%s", err, con)
		}
		checkBooted(t, got, con, "BOOT_IMAGE=/vmlinuz "+params+" --")
		if !strings.Contains(con.String(), "GRUB reads /$cmdpath/grub.cfg") {
			t.Errorf("console:\n%s", con)
		}
	})
	t.Run("iso", func(t *testing.T) {
		b, con, got := httpBootCtx(vms.UEFI, srv+"/deploy.iso")
		if err := (vmedia.HTTPBooter{Media: booter(got)}).Boot(t.Context(), b); err != nil {
			t.Fatalf("boot: %v\n%s", err, con)
		}
		checkBooted(t, got, con, "BOOT_IMAGE=/vmlinuz "+params+" --")
		for _, e := range got.events {
			if strings.HasPrefix(e, string(vms.EventBoot)) {
				t.Errorf("HTTP boot of an ISO emitted %q: the firmware records the boot", e)
			}
		}
	})
	t.Run("ipxe without a ROM", func(t *testing.T) {
		// iPXE continues as the NIC's ROM (HTTPBooter.IPXE: the testbed's
		// TestRedfishUefiHttpBoot runs it); without one it cannot run.
		b, con, got := httpBootCtx(vms.UEFI, srv+"/ipxe.efi")
		err := (vmedia.HTTPBooter{Media: booter(got)}).Boot(t.Context(), b)
		if !errors.Is(err, pxe.ErrExec) || !strings.Contains(con.String(), "iPXE cannot run") {
			t.Errorf("no iPXE: %v\n%s", err, con)
		}
	})
	for _, c := range []struct {
		name, uri string
		want      error
		console   string
	}{
		{"other EFI application", srv + "/other.efi", pxe.ErrExec, "not one this firmware can run"},
		{"not bootable", srv + "/notes.txt", vmedia.ErrNotBootable, "neither an EFI application nor an ISO 9660 image"},
		{"404", srv + "/gone.efi", vmedia.ErrHTTPStatus, "404"},
		{"no URI", "", nil, "is not an http or https URI"},
		{"tftp", "tftp://127.0.0.1/ipxe.efi", nil, "is not an http or https URI"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, con, got := httpBootCtx(vms.UEFI, c.uri)
			err := (vmedia.HTTPBooter{Media: booter(got)}).Boot(t.Context(), b)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(con.String(), c.console) || got.img != nil {
				t.Errorf("err %v (want %v); console:\n%s", err, c.want, con)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "no EFI image"
	}
	return err.Error()
}
