@power
Feature: Power semantics through the API and through the BMC
  A power request through the API reaches the machine over IPMI, and the
  machine really changes state: the BMC, asked independently with ipmitool,
  agrees. The machine's console and SEL show what happened.

  Scenario Outline: Powering a node through the API changes the machine
    Given a metalbed environment with 1 machine
    And node "node-0" is manageable
    And machine "node-0" is powered <from> through its BMC
    When I ask for "<target>" on node "node-0" through the API
    Then the response status is 202
    And node "node-0" reaches power state "<state>"
    And the BMC of machine "node-0" reports chassis power <bmc>
    And node "node-0" has no last_error

    Examples:
      | from | target         | state     | bmc |
      | off  | power on       | power on  | on  |
      | on   | power off      | power off | off |
      | on   | soft power off | power off | off |

  Scenario: A soft power off is an ACPI power button press the OS obeys
    Given a metalbed environment with 1 machine
    And node "node-0" is manageable
    And node "node-0" is powered "power on" through the API
    When node "node-0" is powered "soft power off" through the API
    Then the BMC of machine "node-0" reports chassis power off
    And the console of machine "node-0" shows "ACPI: power button pressed"
    And the console of machine "node-0" shows "reboot: Power down"

  Scenario: Rebooting a node restarts the machine
    Given a metalbed environment with 1 machine
    And node "node-0" is manageable
    And node "node-0" is powered "power on" through the API
    And the console of machine "node-0" shows "metalbed SimBIOS" 1 times
    When node "node-0" is powered "rebooting" through the API
    Then the BMC of machine "node-0" reports chassis power on
    And the console of machine "node-0" shows "metalbed SimBIOS" 2 times

  Scenario: Powering off a machine that is already off succeeds
    Given a metalbed environment with 1 machine
    And node "node-0" is manageable
    And node "node-0" reaches power state "power off"
    When node "node-0" is powered "power off" through the API
    Then the BMC of machine "node-0" reports chassis power off
    And node "node-0" has no last_error

  Scenario Outline: ipmitool drives the machine's power directly
    Given a metalbed environment with 1 machine
    And machine "node-0" is powered <from> through its BMC
    When I run ipmitool "chassis power <action>" against the BMC of machine "node-0"
    Then the command succeeds
    And its output says "<says>"
    And the BMC of machine "node-0" reports chassis power <after>

    Examples:
      | from | action | says                           | after |
      | off  | on     | Chassis Power Control: Up/On   | on    |
      | on   | off    | Chassis Power Control: Down/Off | off  |
      | on   | cycle  | Chassis Power Control: Cycle   | on    |
      | on   | reset  | Chassis Power Control: Reset   | on    |
      | on   | soft   | Chassis Power Control: Soft    | off   |

  Scenario: Two machines are powered independently
    Given a metalbed environment with 2 machines
    When machine "node-1" is powered on through its BMC
    Then the BMC of machine "node-1" reports chassis power on
    And the BMC of machine "node-0" reports chassis power off

  Scenario: A Go program using gophercloud powers a node and sets its boot device
    Given a metalbed environment with 1 uefi machine
    And node "node-0" is available
    When gophercloud sets the boot device of node "node-0" to "disk" persistently
    And gophercloud asks for "power on" on node "node-0"
    Then node "node-0" reaches power state "power on"
    And gophercloud reads node "node-0" as "available" with power "power on"
    And the BMC of machine "node-0" reports chassis power on
    And the console of machine "node-0" shows "Boot device: disk (persistent override)"
    And the BMC of machine "node-0" holds boot flags "e008000000"

  Scenario Outline: The power sync records a change made behind the provisioner's back
    Given a metalbed environment with 1 machine and a power sync every 2 seconds
    And machine "node-0" is powered <start> through its BMC
    And node "node-0" is available
    And node "node-0" reaches power state "power <start>"
    When machine "node-0" is powered <bmc> through its BMC
    Then node "node-0" reaches power state "power <bmc>"
    And node "node-0" has provision state "available"
    And node "node-0" has no last_error

    Examples:
      | start | bmc |
      | off   | on  |
      | on    | off |
