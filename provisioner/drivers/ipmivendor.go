package drivers

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/metalbed/metalbed/provisioner"
)

// IPMIVendor is the "ipmitool" vendor interface: send_raw and bmc_reset,
// described as Ironic 21.4 describes them.
type IPMIVendor struct{ core *ipmiCore }

// Properties lists the driver_info keys read.
func (v *IPMIVendor) Properties() map[string]string { return ipmiProperties() }

// Methods lists send_raw and bmc_reset.
func (v *IPMIVendor) Methods() []VendorMethod {
	return []VendorMethod{
		{
			Name: "bmc_reset", HTTPMethods: []string{"POST"}, Async: true, RequireExclusiveLock: true,
			Description: "Reset the BMC. Required argument: 'warm' (Boolean) - for warm (True) or cold (False) reset.",
		},
		{
			Name: "send_raw", HTTPMethods: []string{"POST"}, Async: true, RequireExclusiveLock: true,
			Description: "Send raw bytes to the BMC. Required argument: 'raw_bytes' - a string of raw bytes (e.g. '0x00 0x01').",
		},
	}
}

// Validate checks driver_info and the method's arguments.
func (v *IPMIVendor) Validate(_ context.Context, node *provisioner.Node, method string, args map[string]any) error {
	if _, err := v.core.info(node); err != nil {
		return err
	}
	switch method {
	case "":
		return nil
	case "send_raw":
		raw, _ := args["raw_bytes"].(string)
		if raw == "" {
			return invalidf("Parameter raw_bytes (string of bytes) was not specified.")
		}
		if _, err := parseRawBytes(raw); err != nil {
			return invalidf("Invalid raw_bytes %q: %v", raw, err)
		}
		return nil
	case "bmc_reset":
		return nil
	}
	return invalidf("Unsupported method (%s) passed to IPMItool driver.", method)
}

// Call runs send_raw or bmc_reset. send_raw returns nothing, as Ironic's
// async passthru answers 202 with an empty body.
func (v *IPMIVendor) Call(ctx context.Context, node *provisioner.Node, method, _ string, args map[string]any) (any, error) {
	if err := v.Validate(ctx, node, method, args); err != nil {
		return nil, err
	}
	info, _ := v.core.info(node)
	switch method {
	case "send_raw":
		b, _ := parseRawBytes(args["raw_bytes"].(string))
		return nil, v.core.do(ctx, info, "raw "+args["raw_bytes"].(string), func(ctx context.Context, t time.Duration) error {
			_, err := v.core.bmc.raw(ctx, info, b[0], b[1], b[2:], t)
			return err
		})
	case "bmc_reset":
		warm := boolValue(args["warm"], false)
		return nil, v.core.do(ctx, info, "bmc reset", func(ctx context.Context, t time.Duration) error {
			return v.core.bmc.bmcReset(ctx, info, warm, t)
		})
	}
	return nil, invalidf("Unsupported method (%s) passed to IPMItool driver.", method)
}

// parseRawBytes reads "0x00 0x01 …" (netfn, command, data) as ipmitool
// raw does: each token a byte in hex with or without 0x.
func parseRawBytes(s string) ([]byte, error) {
	fields := strings.Fields(s)
	if len(fields) < 2 {
		return nil, fmt.Errorf("need at least a netfn and a command")
	}
	out := make([]byte, len(fields))
	for i, f := range fields {
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(f), "0x"), 16, 8)
		if err != nil {
			return nil, fmt.Errorf("byte %q: %w", f, err)
		}
		out[i] = byte(n)
	}
	return out, nil
}
