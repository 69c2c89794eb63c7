package service

import (
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/metalbed/metalbed/provisioner/dhcp"
)

// TestNetbootWiring checks Netboot gives "ipmi" the pxe and ipxe boot
// interfaces and the iscsi deploy interface, and that an iscsi node lists
// the ramdisk's vendor passthru methods.
func TestNetbootWiring(t *testing.T) {
	dir := t.TempDir()
	if _, err := New(Config{StateDir: dir, Netboot: &Netboot{TFTPRoot: dir}}); err == nil {
		t.Fatal("Netboot without APIURL, TFTPServer and Hosts accepted")
	}
	svc, err := New(Config{StateDir: dir, Hostname: "nb", Netboot: &Netboot{
		TFTPRoot: filepath.Join(dir, "tftp"), TFTPServer: netip.MustParseAddr("127.0.0.1"),
		HTTPRoot: filepath.Join(dir, "http"), HTTPURL: "http://127.0.0.1:8080",
		APIURL: "http://127.0.0.1:6385", Hosts: &dhcp.StaticHosts{},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url, _ := serveOn(t, svc, ln)
	code, drv := call(t, "GET", url+"/v1/drivers/ipmi", "")
	if code != 200 {
		t.Fatalf("GET driver: %d %v", code, drv)
	}
	has := func(key, name string) bool {
		l, _ := drv[key].([]any)
		return slices.Contains(l, any(name))
	}
	for _, c := range [][2]string{{"enabled_boot_interfaces", "pxe"}, {"enabled_boot_interfaces", "ipxe"}, {"enabled_deploy_interfaces", "iscsi"}, {"enabled_deploy_interfaces", "direct"}} {
		if !has(c[0], c[1]) {
			t.Errorf("%s lacks %s: %v", c[0], c[1], drv[c[0]])
		}
	}
	code, n := call(t, "POST", url+"/v1/nodes", `{"driver": "ipmi", "deploy_interface": "iscsi", "name": "n0"}`)
	if code != 201 {
		t.Fatalf("create node: %d %v", code, n)
	}
	code, m := call(t, "GET", url+"/v1/nodes/n0/vendor_passthru/methods", "")
	if code != 200 || m["pass_deploy_info"] == nil || m["pass_bootloader_install_info"] == nil || m["send_raw"] == nil {
		t.Errorf("vendor methods: %d %v", code, m)
	}
}
