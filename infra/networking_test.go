package infra_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cl-agent/cl-agent/agent/config"
)

// p2pResources are the P2P load balancer's parts and the condition each has: all of them exist only with
// EnableP2P, and the new address for the first subnet only without an existing allocation.
var p2pResources = map[string]struct{ typ, condition string }{
	"P2PAddress1":                   {"AWS::EC2::EIP", "P2PCreatesAddress"},
	"P2PAddress2":                   {"AWS::EC2::EIP", "HasP2P"},
	"P2PLoadBalancerSecurityGroup":  {"AWS::EC2::SecurityGroup", "HasP2P"},
	"NodeP2PFromLoadBalancer":       {"AWS::EC2::SecurityGroupIngress", "HasP2P"},
	"NodeHealthFromP2PLoadBalancer": {"AWS::EC2::SecurityGroupIngress", "HasP2P"},
	"P2PLoadBalancer":               {"AWS::ElasticLoadBalancingV2::LoadBalancer", "HasP2P"},
	"P2PTargetGroup":                {"AWS::ElasticLoadBalancingV2::TargetGroup", "HasP2P"},
	"P2PListener":                   {"AWS::ElasticLoadBalancingV2::Listener", "HasP2P"},
}

// TestP2PIsOptional: EnableP2P defaults to false, the conditions derive from it (and from P2PAllocationId), and
// every part of the P2P load balancer carries its condition.
func TestP2PIsOptional(t *testing.T) {
	tpl := loadTemplate(t)
	p := tpl.Parameters["EnableP2P"]
	if p["Default"] != "false" || !slices.Equal(strs(p["AllowedValues"]), []string{"true", "false"}) {
		t.Errorf("EnableP2P: default %v, values %v; want 'false' of true/false", p["Default"], p["AllowedValues"])
	}
	if tpl.Parameters["P2PPort"]["Default"] != 6690 {
		t.Errorf("P2PPort default %v, want the node's 6690", tpl.Parameters["P2PPort"]["Default"])
	}
	has := fmt.Sprint(tpl.Conditions["HasP2P"])
	if !strings.Contains(has, "EnableP2P") || !strings.Contains(has, "true") {
		t.Errorf("HasP2P = %s, want EnableP2P = true", has)
	}
	for _, c := range []string{"P2PUsesExistingAddress", "P2PCreatesAddress"} {
		if s := fmt.Sprint(tpl.Conditions[c]); !strings.Contains(s, "HasP2P") || !strings.Contains(s, "P2PAllocationId") {
			t.Errorf("%s = %s, want HasP2P and P2PAllocationId", c, s)
		}
	}
	for id, want := range p2pResources {
		r := tpl.mustResource(t, id, want.typ)
		if r.Condition != want.condition {
			t.Errorf("%s: condition %q, want %q", id, r.Condition, want.condition)
		}
	}
	for id, r := range tpl.Resources {
		if _, listed := p2pResources[id]; strings.Contains(id, "P2P") && !listed {
			t.Errorf("%s (%s) is not checked here", id, r.Type)
		}
	}
}

// TestP2PLoadBalancer: an internet-facing Network Load Balancer in the public subnets, one Elastic IP each (the
// first an existing allocation when one is given), cross-zone so either address reaches the active host, behind
// its own security group; a TCP listener on P2PPort forwarding to the target group.
func TestP2PLoadBalancer(t *testing.T) {
	tpl := loadTemplate(t)
	lb := tpl.mustResource(t, "P2PLoadBalancer", "AWS::ElasticLoadBalancingV2::LoadBalancer")
	p := lb.Properties
	if p["Type"] != "network" || p["Scheme"] != "internet-facing" {
		t.Errorf("type %v scheme %v, want an internet-facing network load balancer", p["Type"], p["Scheme"])
	}
	if sgs := asList(p["SecurityGroups"]); len(sgs) != 1 || ref(sgs[0]) != "P2PLoadBalancerSecurityGroup" {
		t.Errorf("security groups %v, want P2PLoadBalancerSecurityGroup (a load balancer made without one can never get one)", sgs)
	}
	if p["Subnets"] != nil {
		t.Errorf("Subnets is set; the Elastic IPs need SubnetMappings")
	}
	mappings := asList(p["SubnetMappings"])
	if len(mappings) != 2 {
		t.Fatalf("%d subnet mappings, want one per public subnet", len(mappings))
	}
	for i, m := range mappings {
		for _, b := range ifBranches(get(m, "SubnetId")) {
			if n := ref(b); n != fmt.Sprintf("PublicSubnet%d", i+1) && n != fmt.Sprintf("PublicSubnet%dID", i+1) {
				t.Errorf("mapping %d: subnet %v is not public subnet %d", i, b, i+1)
			}
		}
		var allocations []string
		for _, b := range ifBranches(get(m, "AllocationId")) {
			if r, attr := getAtt(b); attr == "AllocationId" {
				allocations = append(allocations, r)
			} else {
				allocations = append(allocations, ref(b))
			}
		}
		want := []string{fmt.Sprintf("P2PAddress%d", i+1)}
		if i == 0 {
			want = []string{"P2PAllocationId", "P2PAddress1"}
		}
		if !slices.Equal(allocations, want) {
			t.Errorf("mapping %d: allocations %v, want %v", i, allocations, want)
		}
	}
	attrs := map[string]any{}
	for _, a := range asList(p["LoadBalancerAttributes"]) {
		attrs[fmt.Sprint(get(a, "Key"))] = get(a, "Value")
	}
	if attrs["load_balancing.cross_zone.enabled"] != "true" {
		t.Errorf("cross-zone load balancing is off: the address in the standby's zone would reach no healthy target")
	}
	if dep := fmt.Sprint(lb.Attrs["DependsOn"]); !strings.Contains(dep, "NetworkReady") {
		t.Errorf("DependsOn %s, want NetworkReady (the internet gateway route)", dep)
	}

	l := tpl.mustResource(t, "P2PListener", "AWS::ElasticLoadBalancingV2::Listener").Properties
	action := asMap(asList(l["DefaultActions"])[0])
	if l["Protocol"] != "TCP" || ref(l["Port"]) != "P2PPort" || ref(l["LoadBalancerArn"]) != "P2PLoadBalancer" ||
		action["Type"] != "forward" || ref(action["TargetGroupArn"]) != "P2PTargetGroup" {
		t.Errorf("listener %v, want TCP on P2PPort forwarding to P2PTargetGroup", l)
	}
}

// TestP2PTargetGroup: TCP on P2PPort to both node hosts (the Auto Scaling group's target groups), health from
// cl-agent's /readyz on 9180 (HTTP 200 only on the active host with a ready node), and a failover that moves peers
// within the bound the README states.
func TestP2PTargetGroup(t *testing.T) {
	tpl := loadTemplate(t)
	tg := tpl.mustResource(t, "P2PTargetGroup", "AWS::ElasticLoadBalancingV2::TargetGroup").Properties
	if tg["Protocol"] != "TCP" || ref(tg["Port"]) != "P2PPort" || tg["TargetType"] != "instance" {
		t.Errorf("protocol %v port %v type %v, want TCP on P2PPort to instances", tg["Protocol"], tg["Port"], tg["TargetType"])
	}
	if tg["HealthCheckProtocol"] != "HTTP" || tg["HealthCheckPath"] != "/readyz" || tg["HealthCheckPort"] != "9180" ||
		get(tg, "Matcher", "HttpCode") != "200" {
		t.Errorf("health check %v %v:%v %v, want HTTP /readyz on cl-agent's 9180 answering 200",
			tg["HealthCheckProtocol"], tg["HealthCheckPath"], tg["HealthCheckPort"], get(tg, "Matcher", "HttpCode"))
	}
	interval, _ := tg["HealthCheckIntervalSeconds"].(int)
	healthy, _ := tg["HealthyThresholdCount"].(int)
	unhealthy, _ := tg["UnhealthyThresholdCount"].(int)
	if interval*healthy > 30 || interval*unhealthy > 30 || interval == 0 || healthy == 0 || unhealthy == 0 {
		t.Errorf("interval %d s × healthy %d / unhealthy %d: a failover must move peers within 30 s (README, P2P and failover)",
			interval, healthy, unhealthy)
	}

	asg := tpl.mustResource(t, "ChainlinkNodeAutoScalingGroup", "AWS::AutoScaling::AutoScalingGroup").Properties
	found := false
	for _, arn := range asList(asg["TargetGroupARNs"]) {
		if l := asList(get(arn, "Fn::If")); len(l) == 3 && l[0] == "HasP2P" && ref(l[1]) == "P2PTargetGroup" {
			found = true
		}
	}
	if !found {
		t.Errorf("the node hosts' group does not register with P2PTargetGroup under HasP2P: %v", asg["TargetGroupARNs"])
	}
	if asg["HealthCheckType"] != "EC2" {
		t.Errorf("HealthCheckType %v: the standby fails /readyz by design and must not be replaced for it", asg["HealthCheckType"])
	}
}

// TestP2PSecurityGroups: the P2P port is open to the internet on the P2P load balancer's security group alone; the
// node hosts take it, and the health check port, only from that group; the load balancer sends nothing else.
func TestP2PSecurityGroups(t *testing.T) {
	tpl := loadTemplate(t)
	lbSG := tpl.mustResource(t, "P2PLoadBalancerSecurityGroup", "AWS::EC2::SecurityGroup").Properties
	in := asList(lbSG["SecurityGroupIngress"])
	if len(in) != 1 {
		t.Fatalf("P2P load balancer ingress %v, want the P2P port alone", in)
	}
	r := asMap(in[0])
	if r["IpProtocol"] != "tcp" || ref(r["FromPort"]) != "P2PPort" || ref(r["ToPort"]) != "P2PPort" || r["CidrIp"] != "0.0.0.0/0" {
		t.Errorf("P2P load balancer ingress %v, want tcp P2PPort from 0.0.0.0/0", r)
	}
	var egress []string
	for _, e := range asList(lbSG["SecurityGroupEgress"]) {
		if ref(get(e, "DestinationSecurityGroupId")) != "ChainlinkNodeSecurityGroup" || get(e, "CidrIp") != nil {
			t.Errorf("P2P load balancer egress %v goes elsewhere than the node hosts", e)
		}
		egress = append(egress, fmt.Sprint(get(e, "FromPort")))
	}
	if !slices.Equal(egress, []string{"map[Ref:P2PPort]", "9180"}) {
		t.Errorf("P2P load balancer egress ports %v, want P2PPort and 9180 to the node hosts", egress)
	}

	nodeSG := "ChainlinkNodeSecurityGroup"
	want := map[string]bool{"P2PPort": false, "9180": false}
	for _, rule := range ingressRules(t, tpl) {
		if rule.group == "P2PLoadBalancerSecurityGroup" {
			continue
		}
		fromP2P := ref(rule.rule["SourceSecurityGroupId"]) == "P2PLoadBalancerSecurityGroup"
		port := fmt.Sprint(rule.rule["FromPort"])
		if ref(rule.rule["FromPort"]) == "P2PPort" {
			port = "P2PPort"
		}
		if port == "P2PPort" && !fromP2P {
			t.Errorf("%v: the P2P port reaches the node hosts only from the P2P load balancer", rule)
		}
		if fromP2P {
			if rule.group != nodeSG || fmt.Sprint(rule.rule["FromPort"]) != fmt.Sprint(rule.rule["ToPort"]) {
				t.Errorf("%v: the P2P load balancer reaches the node hosts only, one port per rule", rule)
			}
			if _, ok := want[port]; !ok {
				t.Errorf("%v: the P2P load balancer reaches the node hosts on P2PPort and 9180 only", rule)
			}
			want[port] = true
		}
	}
	for port, seen := range want {
		if !seen {
			t.Errorf("no rule lets the P2P load balancer reach the node hosts on %s", port)
		}
	}
}

// TestP2PAnnounceReachesTheAgents: with P2P, both hosts' cl-agent listens for the health check on every address and
// announces the load balancer's first Elastic IP (or the existing address) with P2PPort; the stack outputs the
// same address.
func TestP2PAnnounceReachesTheAgents(t *testing.T) {
	tpl := loadTemplate(t)
	header, vars, body := nodeUserData(t, tpl)
	if !strings.Contains(header, "\nP2P_ANNOUNCE='${P2PAnnounce}'\n") || !strings.Contains(body, `"${P2P_ANNOUNCE?}"`) {
		t.Errorf("the header must pass P2P_ANNOUNCE (empty without P2P) and the script require it")
	}
	announce := asList(get(vars["P2PAnnounce"], "Fn::If"))
	if len(announce) != 3 || announce[0] != "HasP2P" || announce[2] != "" {
		t.Fatalf("P2PAnnounce = %v, want !If [HasP2P, address:port, '']", vars["P2PAnnounce"])
	}
	checkAnnounce := func(where string, v any) {
		t.Helper()
		join := asList(get(v, "Fn::Join"))
		parts := asList(join[len(join)-1])
		if len(join) != 2 || join[0] != ":" || len(parts) != 2 || ref(parts[1]) != "P2PPort" {
			t.Fatalf("%s = %v, want !Join [':', [address, P2PPort]]", where, v)
		}
		var addrs []string
		for _, b := range ifBranches(parts[0]) {
			addrs = append(addrs, ref(b))
		}
		if !slices.Equal(addrs, []string{"P2PAddress", "P2PAddress1"}) {
			t.Errorf("%s announces %v, want P2PAddress (existing) or P2PAddress1 (the first subnet's new Elastic IP)", where, addrs)
		}
	}
	checkAnnounce("P2PAnnounce", announce[1])
	out := tpl.Outputs["P2PAnnounceAddress"]
	if out == nil || out["Condition"] != "HasP2P" {
		t.Fatalf("output P2PAnnounceAddress %v, want one under HasP2P", out)
	}
	checkAnnounce("output P2PAnnounceAddress", out["Value"])
	if tpl.Outputs["P2PLoadBalancerAddresses"]["Condition"] != "HasP2P" {
		t.Errorf("output P2PLoadBalancerAddresses must exist under HasP2P")
	}
	if s := fmt.Sprint(tpl.Conditions["AgentHealthChecked"]); !strings.Contains(s, "HasP2P") || !strings.Contains(s, "HasCertificate") {
		t.Errorf("AgentHealthChecked = %s: cl-agent must listen beyond loopback with either load balancer", s)
	}
}

// TestUserDataWritesP2P boots the user-data with a P2P announce address: the configuration turns P2P on at the
// announced port with that address, and cl-agent's own loader accepts it.
func TestUserDataWritesP2P(t *testing.T) {
	f := newUserDataFixture(t)
	archive := makeArchive(t, map[string]string{"cl-agent": fakeAgent, "cl-agent.service": fakeUnit})
	key := "cl-agent/p2p.tar.gz"
	f.upload(t, key, archive)

	for name, tc := range map[string]struct {
		announce string
		want     config.P2P
	}{
		"On":  {"203.0.113.7:6690", config.P2P{Enabled: true, ListenPort: 6690, Announce: "203.0.113.7:6690"}},
		"Off": {"", config.P2P{ListenPort: config.DefaultP2PPort}},
	} {
		t.Run(name, func(t *testing.T) {
			v := f.values(t, key, sha256Hex(archive), map[string]string{"P2PAnnounce": tc.announce})
			o := f.boot(t, run{values: v})
			if o.err != nil {
				t.Fatalf("user-data failed: %v\n%s", o.err, o.stderr)
			}
			data, err := os.ReadFile(filepath.Join(o.root, "etc/cl-agent/config.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse(data)
			if err != nil {
				t.Fatalf("cl-agent refuses the config: %v\n%s", err, data)
			}
			if !slices.Equal(cfg.Node.P2P.Bootstrappers, tc.want.Bootstrappers) || cfg.Node.P2P.Enabled != tc.want.Enabled ||
				cfg.Node.P2P.ListenPort != tc.want.ListenPort || cfg.Node.P2P.Announce != tc.want.Announce {
				t.Errorf("p2p %+v, want %+v\n%s", cfg.Node.P2P, tc.want, data)
			}
		})
	}
}
