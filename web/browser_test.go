package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ipmiclient "github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
	"github.com/chromedp/chromedp"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/testbed"
	"github.com/metalbed/metalbed/web"
)

// The browser tests drive Debian's chromium, headless, through chromedp:
// one browser for the whole package, a tab per test.
var browser struct {
	once sync.Once
	ctx  context.Context // the browser; nil when it could not start
	why  string
}

// tab opens a tab of the shared browser, or skips (fails under
// METALBED_INTEROP=required) when chromium is missing.
func tab(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		path, err := exec.LookPath("chromium")
		if err != nil {
			browser.why = "chromium not found: install the Debian package chromium"
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
			chromedp.WindowSize(1400, 1000), chromedp.Flag("disable-dev-shm-usage", true))
		alloc, _ := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, _ := chromedp.NewContext(alloc)
		if err := chromedp.Do(ctx); err != nil {
			browser.why = fmt.Sprintf("chromium does not start: %v", err)
			return
		}
		browser.ctx = ctx
	})
	if browser.ctx == nil {
		testenv.Unavailable(t, browser.why)
	}
	ctx, cancel := chromedp.NewContext(browser.ctx)
	t.Cleanup(cancel)
	// The tab opens at the first run, with a context that has no
	// deadline: one would close the tab when it passes.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// TestMain closes the shared browser.
func TestMain(m *testing.M) {
	code := m.Run()
	if browser.ctx != nil {
		chromedp.Cancel(browser.ctx)
	}
	os.Exit(code)
}

// artifacts is where screenshots go: $METALBED_ARTIFACTS, else a
// temporary directory of the test.
func artifacts(t *testing.T) string {
	if d := os.Getenv("METALBED_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(artifacts(t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("screenshot %s", p)
}

// run runs actions in the tab with a timeout, failing the test with what
// it was doing.
func run(t *testing.T, ctx context.Context, timeout time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action that returns a value.
func get[T any](t *testing.T, ctx context.Context, timeout time.Duration, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// phasesJS lists the provision states the node view shows, in order.
const phasesJS = `[...document.querySelectorAll('#phases li')].map(li => li.dataset.state)`

// submit clicks a form's button and waits for the page it leads to.
func submit(t *testing.T, ctx context.Context, button string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(button))
	if err != nil {
		t.Fatalf("click %s: %v", button, err)
	}
	if resp.Status != 200 {
		t.Fatalf("click %s: HTTP %d", button, resp.Status)
	}
}

// TestBrowserDeploy serves a testbed with one machine and its dashboard,
// and watches from a browser: the fleet lists the node; on the node view,
// a deploy's provision states appear live (no reload) in order, the
// serial console streams, and the power-off button reaches the BMC.
func TestBrowserDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("deploys a machine")
	}
	ctx := tab(t)
	const free = "127.0.0.1:0"
	nodes := testbed.DemoNodes(false)[:1] // iSCSI deploy, netboot, BIOS
	tb, err := testbed.New(testbed.Config{
		StateDir: t.TempDir(), Machines: testbed.DemoMachines(nodes, false),
		Provisioner: &testbed.Provisioner{APIAddr: free, TimelineAddr: free, DHCPAddr: free, TFTPAddr: free, HTTPAddr: free, NotifyDelay: -1},
		Web:         &testbed.Web{Addr: free},
	})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	url := tb.WebURL()
	if inv := tb.Inventory(); inv.Web != url || url == "" {
		t.Fatalf("inventory web %q, WebURL %q", inv.Web, url)
	}

	// A machine that has not changed since the testbed started is asked
	// for its power state.
	run(t, ctx, 30*time.Second, "fleet view", chromedp.Navigate(url), chromedp.WaitVisible(`#row-node-0 [data-power="off"]`))
	fleet := get(t, ctx, 10*time.Second, "fleet text", chromedp.Text(`#fleet tbody`))
	if !strings.Contains(fleet, "node-0") || !strings.Contains(fleet, "ipmi://127.0.0.1:") {
		t.Errorf("fleet view: %q", fleet)
	}
	screenshot(t, ctx, "fleet.png")

	img, err := tb.BuildDemoImage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A second tab keeps the fleet open during the deploy, marked: a
	// reload would lose the mark.
	fleetTab, closeFleet := chromedp.NewContext(browser.ctx)
	defer closeFleet()
	if err := chromedp.Do(fleetTab); err != nil {
		t.Fatal(err)
	}
	run(t, fleetTab, 30*time.Second, "fleet tab", chromedp.Navigate(url), chromedp.WaitVisible(`#row-node-0`),
		chromedp.Evaluate[chromedp.Void](`window.metalbedMark = 1`))
	// The node view, marked too.
	run(t, ctx, 30*time.Second, "node view", chromedp.Navigate(url+"/nodes/node-0"), chromedp.WaitVisible(`#live`),
		chromedp.Evaluate[chromedp.Void](`window.metalbedMark = 1`))
	dctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	deployed := make(chan []testbed.DemoResult, 1)
	go func() {
		rs, err := tb.DeployDemo(dctx, nodes, img, "", nil)
		if err != nil {
			t.Errorf("deploy: %v", err)
		}
		deployed <- rs
	}()
	run(t, ctx, 3*time.Minute, "deploying shown", chromedp.WaitVisible(`#phases li[data-state="deploying"]`))
	screenshot(t, ctx, "node-deploying.png")
	run(t, ctx, 3*time.Minute, "active shown", chromedp.WaitVisible(`#phases li[data-state="active"]`))
	states := get(t, ctx, 10*time.Second, "phases", chromedp.Evaluate[[]string](phasesJS))
	mark := get(t, ctx, 10*time.Second, "mark", chromedp.Evaluate[int](`window.metalbedMark || 0`))
	if mark != 1 {
		t.Error("the node view reloaded: the phases did not arrive live")
	}
	want := []string{"manageable", "available", "deploying", "wait call-back", "active"}
	i := 0
	for _, s := range states {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	if i != len(want) {
		t.Errorf("phases shown %v, want in order %v", states, want)
	}
	run(t, fleetTab, 30*time.Second, "fleet row active", chromedp.WaitVisible(`#row-node-0 [data-state="active"]`))
	if m := get(t, fleetTab, 10*time.Second, "mark", chromedp.Evaluate[int](`window.metalbedMark || 0`)); m != 1 {
		t.Error("the fleet view reloaded: its rows did not update live")
	}
	for _, r := range <-deployed {
		if r.Err != nil {
			t.Fatalf("deploy %s: %v", r.Name, r.Err)
		}
	}
	get(t, ctx, 30*time.Second, "console streams",
		chromedp.Poll[chromedp.Void](`document.getElementById('console').textContent.includes('metalbed-instance')`, chromedp.WithPollingTimeout(25*time.Second)))
	screenshot(t, ctx, "node-active.png")

	// Power off from the page: the BMC sees it.
	submit(t, ctx, `#power-off`)
	run(t, ctx, 30*time.Second, "power off", chromedp.WaitVisible(`.flash`))
	flash := get(t, ctx, 10*time.Second, "flash", chromedp.Text(`.flash`))
	if !strings.Contains(flash, "asked for power off") {
		t.Fatalf("power off: %q", flash)
	}
	bmc := tb.Inventory().Nodes[0].BMC
	c, err := ipmiclient.NewClient(bmc.Address, bmc.Port, bmc.Username, bmc.Password)
	if err != nil {
		t.Fatal(err)
	}
	c.WithInterface(ipmiclient.InterfaceLanplus).WithCipherSuiteID(types.CipherSuiteID3).WithTimeout(2 * time.Second)
	if err := c.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	on := true
	testenv.Eventually(t, 30*time.Second, func() bool {
		st, err := c.GetChassisStatus(t.Context())
		if err == nil {
			on = st.PowerIsOn
		}
		return err == nil && !st.PowerIsOn
	}, "the BMC to report power off (on: %v)", &on)
	run(t, ctx, 20*time.Second, "power off shown", chromedp.WaitVisible(`#live [data-power="off"]`))
}

// serve runs tb until the test ends and waits for Ready.
func serve(t *testing.T, tb *testbed.Testbed) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tb.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	select {
	case <-tb.Ready():
	case err := <-done:
		done <- err
		t.Fatalf("Serve ended before Ready: %v", err)
	case <-time.After(5 * time.Minute): // the deploy ramdisk is built first
		t.Fatal("not ready")
	}
}

// TestBrowserReplay plays a recorded deploy (a timeline.jsonl, as
// `metalbed web --replay` reads it) in the page: it starts at 1×, the
// 100× button speeds it up, and the phases arrive up to active.
func TestBrowserReplay(t *testing.T) {
	ctx := tab(t)
	path := filepath.Join(t.TempDir(), events.LogName)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := events.New(events.Config{Sink: f})
	who := events.Who{Machine: "node-0", Node: "5b3c0d1e-0000-4000-8000-000000000001", NodeName: "node-0"}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i, e := range []events.Event{
		{Kind: events.ConductorState, Detail: "available"},
		{Kind: events.ConductorState, Detail: "deploying → active"},
		{Kind: events.BMCChassisControl, Detail: "power on"},
		{Kind: events.MachinePowerOn},
		{Kind: events.DHCPAck, Detail: "127.1.0.10"},
		{Kind: events.TFTPFile, Detail: "pxelinux.0"},
		{Kind: events.ConductorState, Detail: "wait call-back → active"},
		{Kind: events.RamdiskUp},
		{Kind: events.ISCSILogin},
		{Kind: events.ConductorImageWritten},
		{Kind: events.ConductorState, Detail: "active"},
	} {
		e.Time, e.Who = t0.Add(time.Duration(i)*2*time.Second), who
		rec.Record(e)
	}
	f.Close()
	entries, err := events.ReadLog(path)
	if err != nil || len(entries) != 11 {
		t.Fatalf("ReadLog: %d entries, %v", len(entries), err)
	}
	srv, err := web.New(web.Config{Replay: entries})
	if err != nil {
		t.Fatal(err)
	}
	ln := mustListen(t)
	sctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	url := "http://" + ln.Addr().String()
	run(t, ctx, 30*time.Second, "replay at 1×", chromedp.Navigate(url+"/nodes/node-0"),
		chromedp.WaitVisible(`#phases li[data-state="deploying"]`))
	submit(t, ctx, `#speed-100`)
	run(t, ctx, 30*time.Second, "replay at 100×", chromedp.WaitVisible(`#speed-100[aria-pressed="true"]`),
		chromedp.WaitVisible(`#phases li[data-state="active"]`))
	states := get(t, ctx, 10*time.Second, "phases", chromedp.Evaluate[[]string](phasesJS))
	if !slices.Equal(states, []string{"available", "deploying", "wait call-back", "active"}) {
		t.Errorf("replayed phases %v", states)
	}
	svg := get(t, ctx, 10*time.Second, "swimlanes", chromedp.OuterHTML(`#lanes`))
	for _, k := range []string{"dhcp.ack", "tftp.file", "ramdisk.up", "iscsi.login"} {
		if !strings.Contains(svg, `data-kind="`+k+`"`) {
			t.Errorf("swimlanes lack %s", k)
		}
	}
	screenshot(t, ctx, "replay.png")
	b, _ := json.Marshal(states)
	t.Logf("replayed %s", b)
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
