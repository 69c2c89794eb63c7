package direct

import "github.com/metalbed/metalbed/provisioner/drivers"

var _ drivers.DeployStepLister = (*Deploy)(nil)

// DeploySteps are the agent deploy steps of Ironic 21.4's direct deploy
// (agent.py AgentDeploy, agent_base.py AgentDeployMixin and
// AgentOobStepsMixin), besides the core deploy.deploy: this interface runs
// them itself, in this order, through the agent's heartbeats.
func (d *Deploy) DeploySteps() []drivers.DeployStepInfo {
	steps := []struct {
		name     string
		priority int
	}{
		{"write_image", 80},
		{"prepare_instance_boot", 60},
		{"tear_down_agent", 40},
		{"switch_to_tenant_network", 30},
		{"boot_instance", 20},
	}
	out := make([]drivers.DeployStepInfo, len(steps))
	for i, s := range steps {
		out[i] = drivers.DeployStepInfo{Interface: drivers.RoleDeploy, Step: s.name, Priority: s.priority}
	}
	return out
}
