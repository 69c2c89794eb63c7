@httpboot
Feature: Deploying by UEFI HTTP boot with metalbed's conductor
  `metalbed up --boot-mode uefi --enroll --enroll-driver redfish
  --boot-interface redfish-https` enrolls every machine with the redfish
  hardware type and upstream Ironic's redfish-https boot interface (deploy
  interface direct, boot_option local). The conductor builds the same ISO
  as for virtual media and publishes it on the HTTP boot server, but
  inserts nothing: it has the BMC boot the machine once by UEFI HTTP
  (BootSourceOverrideTarget UefiHttp) with HttpBootUri the ISO's URL. The
  firmware fetches the ISO and boots it as it boots a virtual CD; the agent
  deploys the image and the instance boots from disk, the ISO removed.
  Simulated UEFI machines only: legacy BIOS has no HTTP boot, and OVMF in
  libvirt VMs takes its HTTP boot URI from DHCP, not from the BMC.

  Scenario: A uefi machine deploys a whole-disk image booted by UEFI HTTP and undeploys
    Given a UEFI HTTP boot testbed with 1 uefi machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "whole-disk" image
    And node "node-0" has automated cleaning on
    When I deploy node "node-0"
    Then node "node-0" is active
    And node "node-0" has no last_error
    And the disk of machine "node-0" holds the image
    And machine "node-0" boots from its disk in uefi mode
    And the console of machine "node-0" shows "Booting from network (UEFI HTTP): http://"
    And the console of machine "node-0" shows "boot_method=vmedia"
    And the timeline of node "node-0" shows "bmc.redfish.boot" naming "target UefiHttp, Once, UEFI"
    And the timeline of node "node-0" shows "machine.boot" naming ".iso"
    And the timeline of node "node-0" shows "bmc.redfish.boot" before "agent.lookup"
    And the timeline of node "node-0" shows "agent.heartbeat" before "agent.image.written"
    And the timeline of node "node-0" shows "agent.image.written" before "instance.booted"
    And the timeline of node "node-0" shows "bmc.redfish.virtual_media" 0 times
    And the boot ISO of node "node-0" is no longer published
    When I undeploy node "node-0"
    Then node "node-0" ends in provision state "available"
    And the disk of machine "node-0" holds no partition table
    And the boot ISO of node "node-0" is no longer published
