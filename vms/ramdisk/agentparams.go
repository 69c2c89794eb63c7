package ramdisk

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// AgentParams are the ironic-python-agent kernel parameters Ironic's PXE
// and iPXE templates put on the deploy kernel's command line (ipa-api-url
// and friends; IPA reads them in its config.py). A command line with
// ipa-api-url selects the agent mode of the ramdisk.
type AgentParams struct {
	APIURL          string        // ipa-api-url: the Ironic API endpoint
	Insecure        bool          // ipa-insecure=1: do not verify TLS
	GlobalRequestID string        // ipa-global-request-id: X-OpenStack-Request-ID
	DriverName      string        // ipa-driver-name: legacy vendor_passthru lookup driver
	LookupTimeout   time.Duration // ipa-lookup-timeout (seconds); 0 = agent default
	LookupInterval  time.Duration // ipa-lookup-interval (seconds); 0 = agent default
	ListenPort      int           // ipa-listen-port; 0 = agent default (9999)
	AdvertiseHost   string        // ipa-advertise-host
	AdvertisePort   int           // ipa-advertise-port
	AgentToken      string        // ipa-agent-token (virtual media boots)
	APIVersion      string        // ipa-ironic-api-version: skip version discovery
	Debug           bool          // ipa-debug=1
	// InspectionCallbackURL is ipa-inspection-callback-url: where the
	// agent posts its inventory (inspection).
	InspectionCallbackURL string
}

// AgentMode reports whether the command line asks for the agent: it names
// ipa-api-url, as every Ironic agent boot template does.
func (p Params) AgentMode() bool {
	_, ok := p.Raw["ipa-api-url"]
	return ok
}

// ParseAgentParams reads the agent parameters from a parsed command line.
// A malformed value is an error naming the parameter.
func (p Params) ParseAgentParams() (AgentParams, error) {
	raw := p.Raw
	a := AgentParams{
		APIURL:          strings.TrimRight(raw["ipa-api-url"], "/"),
		GlobalRequestID: raw["ipa-global-request-id"],
		DriverName:      raw["ipa-driver-name"],
		AdvertiseHost:   raw["ipa-advertise-host"],
		AgentToken:      raw["ipa-agent-token"],
		APIVersion:      raw["ipa-ironic-api-version"],
	}
	if a.APIURL == "" {
		return a, fmt.Errorf("kernel command line lacks ipa-api-url")
	}
	if u, err := url.Parse(a.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return a, fmt.Errorf("ipa-api-url=%q: want http(s)://host[:port]", a.APIURL)
	}
	var err error
	if a.Insecure, err = boolParam(raw, "ipa-insecure"); err != nil {
		return a, err
	}
	if a.Debug, err = boolParam(raw, "ipa-debug"); err != nil {
		return a, err
	}
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{{"ipa-lookup-timeout", &a.LookupTimeout}, {"ipa-lookup-interval", &a.LookupInterval}} {
		v, ok := raw[d.key]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return a, fmt.Errorf("%s=%q: want whole seconds", d.key, v)
		}
		*d.dst = time.Duration(n) * time.Second
	}
	for _, d := range []struct {
		key string
		dst *int
	}{{"ipa-listen-port", &a.ListenPort}, {"ipa-advertise-port", &a.AdvertisePort}} {
		v, ok := raw[d.key]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 65535 {
			return a, fmt.Errorf("%s=%q: want a TCP port", d.key, v)
		}
		*d.dst = n
	}
	if v, ok := raw["ipa-inspection-callback-url"]; ok {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return a, fmt.Errorf("ipa-inspection-callback-url=%q: want an http(s) URL", v)
		}
		a.InspectionCallbackURL = v
	}
	if v := a.APIVersion; v != "" {
		maj, min, ok := strings.Cut(v, ".")
		_, e1 := strconv.Atoi(maj)
		_, e2 := strconv.Atoi(min)
		if !ok || e1 != nil || e2 != nil {
			return a, fmt.Errorf("ipa-ironic-api-version=%q: want MAJOR.MINOR", v)
		}
	}
	return a, nil
}

// boolParam reads an oslo.config-style boolean kernel parameter.
func boolParam(raw map[string]string, key string) (bool, error) {
	v, ok := raw[key]
	if !ok {
		return false, nil
	}
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on", "":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%s=%q: want 0 or 1", key, v)
}
