package drivers

import (
	"context"
	"errors"

	"github.com/metalbed/metalbed/provisioner"
)

// StepArg describes one argument of a step (an entry of Ironic's
// argsinfo).
type StepArg struct {
	Description string
	Required    bool
}

// DeployStepInfo is one deploy step an interface offers, as Ironic's
// get_deploy_steps lists it (the @deploy_step decorator): the interface
// and step name, its default priority (0: runs only when a deploy template
// or the request's deploy_steps asks for it) and its arguments.
type DeployStepInfo struct {
	Interface Role
	Step      string
	Priority  int
	ArgsInfo  map[string]StepArg
}

// CoreDeployStep is deploy.deploy, the step every deploy interface has
// (priority 100): the conductor runs it as Prepare then Deploy.
var CoreDeployStep = DeployStepInfo{Interface: RoleDeploy, Step: "deploy", Priority: 100}

// DeployStepLister is implemented by a DeployInterface that has deploy
// steps besides deploy.deploy which it runs itself, in its own order,
// as part of Deploy and its callbacks (the direct deploy's agent steps:
// write_image, prepare_instance_boot, …). Listing them lets the conductor
// validate deploy templates as Ironic does.
type DeployStepLister interface {
	DeploySteps() []DeployStepInfo
}

// DeployStepRunner is an interface whose deploy steps the conductor runs
// one at a time, in priority order around deploy.deploy (a BIOS
// interface's apply_configuration). RunDeployStep runs step to its end;
// an error fails the deploy (a *DeployError's message is Ironic's).
type DeployStepRunner interface {
	DeployStepLister
	RunDeployStep(ctx context.Context, task *Task, step string, args map[string]any) error
}

// BiosInterface is a node's bios interface: it checks driver_info and runs
// its deploy steps.
type BiosInterface interface {
	Validate(ctx context.Context, node *provisioner.Node) error
	DeployStepRunner
}

// ErrStepFailed is the cause of a *DeployError from RunDeployStep whose
// message is the node's whole last_error, as for Ironic's steps that fail
// the node themselves (redfish bios's "Attributes … are not updated");
// other step errors are reported as "Deploy step IFACE.STEP failed: MSG.".
var ErrStepFailed = errors.New("deploy step failed")
