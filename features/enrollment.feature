@enrollment
Feature: Enrolling and validating nodes
  An operator enrolls a simulated machine in the provisioner as in Ironic:
  a node with the ipmi hardware type whose driver_info points at the
  machine's BMC, a port with its MAC, then manage and provide.

  Scenario: A node enrolled with its BMC goes from enroll to available
    Given a metalbed environment with 1 machine
    Given machine "node-0" is enrolled with the ipmi driver
    And machine "node-0" has a port with its MAC address
    When I ask to "manage" node "node-0"
    Then the response status is 202
    And node "node-0" reaches provision state "manageable"
    And validating node "node-0" reports:
      | interface  | result |
      | power      | true   |
      | management | true   |
    When I ask to "provide" node "node-0"
    Then node "node-0" reaches provision state "available"
    And node "node-0" has no last_error

  Scenario: Manage reads the power state from the BMC
    Given a metalbed environment with 1 machine
    Given machine "node-0" is powered on through its BMC
    And node "node-0" is manageable
    Then node "node-0" reaches power state "power on"

  Scenario Outline: driver_info the ipmi driver cannot use fails validation with Ironic's reason
    Given a metalbed environment with 1 machine
    Given machine "node-0" is enrolled with the ipmi driver and driver_info:
      | field   | value   |
      | <field> | <value> |
    Then validating node "node-0" reports:
      | interface  | result | reason   |
      | power      | false  | <reason> |
      | management | false  | <reason> |

    Examples:
      | field               | value     | reason                                                                      |
      | ipmi_address        | (absent)  | Missing the following IPMI credentials in node's driver_info: ['ipmi_address'] |
      | ipmi_port           | notaport  | ipmi_port "notaport" is not a valid port.                                   |
      | ipmi_priv_level     | KING      | Invalid privilege level value:KING                                          |
      | ipmi_protocol_version | 3.0     | Invalid IPMI protocol version value 3.0                                     |

  Scenario: A node with bad driver_info cannot be managed
    Given a metalbed environment with 1 machine
    Given machine "node-0" is enrolled with the ipmi driver and driver_info:
      | field        | value    |
      | ipmi_address | (absent) |
    When I ask to "manage" node "node-0"
    Then node "node-0" reaches provision state "enroll"
    And node "node-0" has provision state "enroll"

  Scenario Outline: A port with an invalid MAC address is refused
    Given a metalbed environment with 1 machine
    Given machine "node-0" is enrolled with the ipmi driver
    When I create a port for node "node-0" with address "<mac>"
    Then the response status is 400
    And the error is Ironic's "Client" fault saying "Expected valid MAC address for address: <mac>"

    Examples:
      | mac               |
      | zz                |
      | 52:54:00:12:34    |
      | 52:54:00:12:34:5g |

  Scenario: Two ports cannot share a MAC address
    Given a metalbed environment with 1 machine
    Given machine "node-0" is enrolled with the ipmi driver
    And machine "node-0" has a port with its MAC address
    When I create a port for node "node-0" with address "{node-0.mac}"
    Then the response status is 409

  Scenario: The baremetal CLI enrolls and validates a node
    Given a metalbed environment with 1 machine
    When I run "baremetal node create --driver ipmi --name cli-node --driver-info ipmi_address={node-0.bmc_address} --driver-info ipmi_port={node-0.bmc_port} --driver-info ipmi_username={node-0.bmc_username} --driver-info ipmi_password={node-0.bmc_password} -f value -c provision_state"
    Then the command succeeds
    And its output says "enroll"
    When I run "baremetal node validate cli-node -f value -c Interface -c Result"
    Then the command succeeds
    And its output contains "power True"
    And its output contains "management True"

  Scenario: Machines from a topology file keep their own credentials and boot modes
    Given a metalbed environment from the topology:
      """
      defaults:
        disk_size: 1GiB
        bmc: {username: admin, password: password}
      machines:
        - name: dell-0
          boot_mode: uefi
          bmc: {username: root, password: calvin}
        - name: hp-0
          boot_mode: bios
      """
    Then machine "dell-0" has BMC credentials "root" / "calvin" and boot mode "uefi"
    And machine "hp-0" has BMC credentials "admin" / "password" and boot mode "bios"
    When I run ipmitool "-U admin -P password chassis power status" against the BMC of machine "dell-0"
    Then the command fails
    And node "dell-0" is available
    And node "hp-0" is available
    When node "dell-0" is powered "power on" through the API
    Then the console of machine "dell-0" shows "Boot mode: UEFI"
    And the BMC of machine "hp-0" reports chassis power off
