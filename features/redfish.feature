@redfish
Feature: Redfish BMCs: power, boot overrides and sessions
  Every machine is also a Redfish ComputerSystem on the testbed's one
  Redfish service (HTTPS, the CA in the state directory; inventory.json
  names the address, the system and the credentials). Redfish and IPMI
  are two doors to one BMC: what one sets the other reads. A Once boot
  override means once: the next boot consumes it and it reads Disabled
  afterwards, while a Continuous one survives boots.

  Scenario Outline: A reset through Redfish changes the machine as IPMI sees it
    Given a metalbed environment with 1 machine
    When I reset machine "node-0" with "On" through Redfish
    Then Redfish reports machine "node-0" powered "On"
    When I reset machine "node-0" with "<reset>" through Redfish
    Then Redfish reports machine "node-0" powered "<after>"
    And the BMC of machine "node-0" reports chassis power <ipmi>

    Examples:
      | reset           | after | ipmi |
      | ForceOff        | Off   | off  |
      | ForceRestart    | On    | on   |
      | PowerCycle      | On    | on   |
      | PushPowerButton | Off   | off  |

  Scenario: A reset Redfish does not know is refused with a Redfish error
    Given a metalbed environment with 1 machine
    When I ask Redfish to reset machine "node-0" with "Explode"
    Then the response status is 400
    And the Redfish error says "Explode"
    And Redfish reports machine "node-0" powered "Off"

  Scenario Outline: A Once override is consumed by the next boot
    Given a metalbed environment with 1 machine
    When I set the Redfish boot override of machine "node-0" to "Pxe" "Once" in "<mode>" mode
    Then the BMC of machine "node-0" holds boot flags "<flags>"
    And Redfish reads the boot override of machine "node-0" as "Pxe" "Once" in "<mode>" mode
    When I reset machine "node-0" with "On" through Redfish
    Then the console of machine "node-0" shows "Boot device: pxe (one-time override)"
    And the console of machine "node-0" shows "<booting>"
    And Redfish reads the boot override of machine "node-0" as "None" "Disabled"
    And the BMC of machine "node-0" holds boot flags "0000000000"

    Examples:
      | mode   | flags      | booting                                |
      | Legacy | 8004000000 | Booting from network (legacy BIOS PXE) |
      | UEFI   | a004000000 | Booting from network (UEFI PXE)        |

  Scenario: A Continuous override survives boots
    Given a metalbed environment with 1 machine
    When I set the Redfish boot override of machine "node-0" to "Pxe" "Continuous" in "Legacy" mode
    And I reset machine "node-0" with "On" through Redfish
    And I reset machine "node-0" with "ForceRestart" through Redfish
    Then the console of machine "node-0" shows "Boot device: pxe (persistent override)" 2 times
    And Redfish reads the boot override of machine "node-0" as "Pxe" "Continuous" in "Legacy" mode
    And the BMC of machine "node-0" holds boot flags "c004000000"

  Scenario: What IPMI sets, Redfish reads
    Given a metalbed environment with 1 machine
    When I run ipmitool "chassis bootdev disk options=persistent,efiboot" against the BMC of machine "node-0"
    Then the command succeeds
    And Redfish reads the boot override of machine "node-0" as "Hdd" "Continuous" in "UEFI" mode
    When machine "node-0" is powered on through its BMC
    Then Redfish reports machine "node-0" powered "On"

  Scenario: A boot override changed under a client is refused by If-Match
    Given a metalbed environment with 1 machine
    When I set the Redfish boot override of machine "node-0" to "Pxe" "Once"
    Then a PATCH of machine "node-0"'s boot override with a stale ETag answers 412 and changes nothing

  Scenario: A session's token works until logout
    Given a metalbed environment with 2 machines
    When I log in to the Redfish service with the credentials of machine "node-0"
    Then machine "node-0"'s system answers 200 to my session
    When I log out of the Redfish session through machine "node-0"'s service
    Then machine "node-0"'s system answers 401 to my session

  Scenario: Wrong or foreign credentials are refused
    Given a metalbed environment from the topology:
      """
      machines:
        - name: node-0
          bmc: {username: admin, password: password}
        - name: node-1
          bmc: {username: root, password: calvin}
      """
    Then machine "node-0"'s system answers 401 to password "wrong"
    And the Redfish error says "no valid session"
    And machine "node-0"'s system answers 401 to no credentials
    And machine "node-1"'s system answers 403 to the credentials of machine "node-0"
    And machine "node-1"'s system answers 200 to the credentials of machine "node-1"
    When I log in to the Redfish service as user "admin" with password "wrong" through machine "node-0"'s service
    Then the response status is 401

  Scenario: A Redfish fault answers one action with 503, then the BMC recovers
    Given a metalbed testbed with 1 bios machine
    And the fault "503 on the next action" is injected at layer "redfish" for node "node-0"
    When I ask Redfish to reset machine "node-0" with "On"
    Then the response status is 503
    And the timeline of node "node-0" shows "fault.redfish.status"
    When I reset machine "node-0" with "On" through Redfish
    Then Redfish reports machine "node-0" powered "On"

  @libvirt
  Scenario: Once and Continuous through Redfish on a real VM
    Given a metalbed testbed with 1 bios machine
    When I set the Redfish boot override of machine "node-0" to "Pxe" "Once" in "Legacy" mode
    And I reset machine "node-0" with "On" through Redfish
    Then Redfish reports machine "node-0" powered "On"
    And Redfish reads the boot override of machine "node-0" as "None" "Disabled"
    And the BMC of machine "node-0" holds boot flags "0000000000"
    When I set the Redfish boot override of machine "node-0" to "Hdd" "Continuous" in "Legacy" mode
    And I reset machine "node-0" with "ForceRestart" through Redfish
    Then Redfish reports machine "node-0" powered "On"
    And Redfish reads the boot override of machine "node-0" as "Hdd" "Continuous" in "Legacy" mode
    When I reset machine "node-0" with "ForceOff" through Redfish
    Then Redfish reports machine "node-0" powered "Off"
    And the BMC of machine "node-0" reports chassis power off
    And the timeline of node "node-0" shows "bmc.redfish.boot"
    And the timeline of node "node-0" shows "bmc.redfish.reset"

  Scenario: After a power-off the BMC refuses power-on for a while, as an iDRAC does
    Given a metalbed testbed with 1 bios machine
    And I reset machine "node-0" with "On" through Redfish
    And the fault "409 on power-on for 3 s after a power-off" is injected at layer "redfish" for node "node-0"
    When I reset machine "node-0" with "ForceOff" through Redfish
    And I ask Redfish to reset machine "node-0" with "On"
    Then the response status is 409
    And the timeline of node "node-0" shows "fault.redfish.power-on-conflict"
    And Redfish reports machine "node-0" powered "Off"
    And Redfish powers machine "node-0" on within 30 seconds
    And Redfish reports machine "node-0" powered "On"

  Scenario: A session that expires early has to be opened again
    Given a metalbed testbed with 1 bios machine
    And I log in to the Redfish service with the credentials of machine "node-0"
    And machine "node-0"'s system answers 200 to my session
    When the fault "session expires early" is injected at layer "redfish" for node "node-0"
    Then machine "node-0"'s system answers 401 to my session
    And the Redfish error says "no valid session"
    And the timeline of node "node-0" shows "fault.redfish.session-expire"
    When I log in to the Redfish service with the credentials of machine "node-0"
    Then machine "node-0"'s system answers 200 to my session

  Scenario: metalbed's conductor drives a machine through its redfish hardware type
    Given a metalbed environment with 1 machine
    And machine "node-0" is enrolled with the redfish driver
    And node "node-0" is manageable
    When node "node-0" is powered "power on" through the API
    Then node "node-0" reaches power state "power on"
    And Redfish reports machine "node-0" powered "On"
    And the BMC of machine "node-0" reports chassis power on
    When I set the boot device of node "node-0" to "pxe" persistently through the API
    Then the BMC of machine "node-0" holds boot flags "e004000000"
    And the API reports the boot device of node "node-0" as "pxe" with persistent true
    When node "node-0" is powered "power off" through the API
    Then node "node-0" reaches power state "power off"
    And the BMC of machine "node-0" reports chassis power off
