package infra_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestInstancesRequireIMDSv2: every host comes from a launch template that requires IMDSv2 tokens; nothing is
// launched any other way.
func TestInstancesRequireIMDSv2(t *testing.T) {
	tpl := loadTemplate(t)
	for _, forbidden := range []string{"AWS::EC2::Instance", "AWS::AutoScaling::LaunchConfiguration"} {
		if ids := tpl.ofType(forbidden); len(ids) > 0 {
			t.Errorf("%s resources %v: hosts must come from launch templates", forbidden, ids)
		}
	}
	lts := tpl.ofType("AWS::EC2::LaunchTemplate")
	if len(lts) != 2 {
		t.Fatalf("want the node and the bastion launch templates, got %v", lts)
	}
	for _, id := range lts {
		md := get(tpl.Resources[id].Properties, "LaunchTemplateData", "MetadataOptions")
		if get(md, "HttpTokens") != "required" {
			t.Errorf("%s: MetadataOptions.HttpTokens = %v, want required", id, get(md, "HttpTokens"))
		}
		if hop, _ := get(md, "HttpPutResponseHopLimit").(int); hop != 1 {
			t.Errorf("%s: HttpPutResponseHopLimit = %v, want 1 (containers must not reach the role's credentials)", id, hop)
		}
	}
	for _, id := range tpl.ofType("AWS::AutoScaling::AutoScalingGroup") {
		lt := ref(get(tpl.Resources[id].Properties, "LaunchTemplate", "LaunchTemplateId"))
		if tpl.Resources[lt].Type != "AWS::EC2::LaunchTemplate" {
			t.Errorf("%s does not launch from one of the template's launch templates", id)
		}
	}
}

// keyRef reports whether v names the template's customer managed key (Ref, or GetAtt Arn).
func keyRef(tpl *template, v any) bool {
	id := ref(v)
	if r, attr := getAtt(v); r != "" && attr == "Arn" {
		id = r
	}
	return id != "" && tpl.Resources[id].Type == "AWS::KMS::Key"
}

// TestEverythingStoredIsEncrypted: volumes, the database, the secrets, the log groups and the topic are
// encrypted, all but the volumes with the customer managed key.
func TestEverythingStoredIsEncrypted(t *testing.T) {
	tpl := loadTemplate(t)

	keys := tpl.ofType("AWS::KMS::Key")
	if len(keys) != 1 {
		t.Fatalf("want one customer managed key, got %v", keys)
	}
	key := tpl.Resources[keys[0]]
	if key.Properties["EnableKeyRotation"] != true {
		t.Errorf("%s: EnableKeyRotation must be true", keys[0])
	}
	if key.Attrs["DeletionPolicy"] != "Retain" {
		t.Errorf("%s: DeletionPolicy must be Retain (snapshots, retained secrets and logs need the key)", keys[0])
	}

	checks := map[string]func(id string, r resource){
		"AWS::EC2::LaunchTemplate": func(id string, r resource) {
			bdms := asList(get(r.Properties, "LaunchTemplateData", "BlockDeviceMappings"))
			if len(bdms) == 0 {
				t.Errorf("%s: no block device mapping, so the root volume's encryption is left to the account default", id)
			}
			for _, b := range bdms {
				if get(b, "Ebs", "Encrypted") != true {
					t.Errorf("%s: volume %v is not encrypted", id, get(b, "DeviceName"))
				}
			}
		},
		"AWS::RDS::DBInstance": func(id string, r resource) {
			if r.Properties["StorageEncrypted"] != true || !keyRef(tpl, r.Properties["KmsKeyId"]) {
				t.Errorf("%s: storage must be encrypted with the customer managed key", id)
			}
		},
		"AWS::SecretsManager::Secret": func(id string, r resource) {
			if !keyRef(tpl, r.Properties["KmsKeyId"]) {
				t.Errorf("%s: must be encrypted with the customer managed key", id)
			}
		},
		"AWS::Logs::LogGroup": func(id string, r resource) {
			if !keyRef(tpl, r.Properties["KmsKeyId"]) {
				t.Errorf("%s: must be encrypted with the customer managed key", id)
			}
			if r.Properties["RetentionInDays"] == nil {
				t.Errorf("%s: no retention", id)
			}
		},
		"AWS::SNS::Topic": func(id string, r resource) {
			if !keyRef(tpl, r.Properties["KmsMasterKeyId"]) {
				t.Errorf("%s: must be encrypted with the customer managed key", id)
			}
		},
	}
	// Any other kind of storage needs a check here before it may enter the template.
	storage := regexp.MustCompile(`^AWS::(S3::Bucket|EC2::Volume|EFS::|DynamoDB::|RDS::DBCluster|ElastiCache::|SQS::Queue|Kinesis::|OpenSearchService::)`)
	counts := map[string]int{}
	for id, r := range tpl.Resources {
		if check, ok := checks[r.Type]; ok {
			check(id, r)
			counts[r.Type]++
		} else if storage.MatchString(r.Type) {
			t.Errorf("%s: %s holds data and has no encryption check in this test", id, r.Type)
		}
	}
	want := map[string]int{
		"AWS::EC2::LaunchTemplate": 2, "AWS::RDS::DBInstance": 1, "AWS::SecretsManager::Secret": 3,
		"AWS::Logs::LogGroup": 2, "AWS::SNS::Topic": 1,
	}
	for typ, n := range want {
		if counts[typ] != n {
			t.Errorf("%d %s resources checked, want %d", counts[typ], typ, n)
		}
	}
}

// ingressRule is one ingress permission, inline or a separate AWS::EC2::SecurityGroupIngress.
type ingressRule struct {
	group string // logical id of the security group
	rule  map[string]any
}

func (r ingressRule) String() string {
	return fmt.Sprintf("%s %v/%v-%v", r.group, r.rule["IpProtocol"], r.rule["FromPort"], r.rule["ToPort"])
}

func ingressRules(t testing.TB, tpl *template) []ingressRule {
	t.Helper()
	var rules []ingressRule
	for _, id := range tpl.ofType("AWS::EC2::SecurityGroup") {
		for _, r := range asList(tpl.Resources[id].Properties["SecurityGroupIngress"]) {
			rules = append(rules, ingressRule{id, asMap(r)})
		}
	}
	for _, id := range tpl.ofType("AWS::EC2::SecurityGroupIngress") {
		p := tpl.Resources[id].Properties
		g := ref(p["GroupId"])
		if g == "" {
			t.Fatalf("%s: GroupId must be a Ref to one of the template's security groups", id)
		}
		rules = append(rules, ingressRule{g, p})
	}
	return rules
}

// worldOpen reports whether a CIDR value can be the whole internet: a literal /0, or a parameter whose default
// is one or whose pattern admits one.
func worldOpen(tpl *template, v any) (bool, string) {
	if v == nil {
		return false, ""
	}
	if s, ok := v.(string); ok {
		return strings.HasSuffix(s, "/0"), s
	}
	name := ref(v)
	p, ok := tpl.Parameters[name]
	if !ok {
		return true, fmt.Sprintf("%v (not a parameter)", v)
	}
	if d, ok := p["Default"].(string); ok && strings.HasSuffix(d, "/0") {
		return true, name + " default " + d
	}
	pat, _ := p["AllowedPattern"].(string)
	if pat == "" {
		return true, name + " without AllowedPattern"
	}
	re := regexp.MustCompile(pat)
	for _, cidr := range []string{"0.0.0.0/0", "10.0.0.0/0", "::/0"} {
		if re.MatchString(cidr) {
			return true, fmt.Sprintf("%s admits %s", name, cidr)
		}
	}
	return false, name
}

// TestNoIngressFromTheInternet: nothing is open to 0.0.0.0/0 or ::/0 except HTTP and HTTPS on the load balancer;
// the node hosts and the database take traffic only from their peers' security groups.
func TestNoIngressFromTheInternet(t *testing.T) {
	tpl := loadTemplate(t)

	lbGroups := map[string]bool{}
	for _, id := range tpl.ofType("AWS::ElasticLoadBalancingV2::LoadBalancer") {
		for _, g := range asList(tpl.Resources[id].Properties["SecurityGroups"]) {
			lbGroups[ref(g)] = true
		}
	}
	rules := ingressRules(t, tpl)
	if len(rules) == 0 {
		t.Fatal("no ingress rules found")
	}
	for _, r := range rules {
		if r.rule["IpProtocol"] != "tcp" {
			t.Errorf("%v: only tcp ingress, with explicit ports", r)
		}
		if r.rule["CidrIpv6"] != nil || r.rule["SourcePrefixListId"] != nil {
			t.Errorf("%v: unexpected IPv6 or prefix-list source", r)
		}
		open, why := worldOpen(tpl, r.rule["CidrIp"])
		if !open {
			continue
		}
		if lbGroups[r.group] && ref(r.rule["FromPort"]) == "P2PPort" && ref(r.rule["ToPort"]) == "P2PPort" {
			continue // the P2P load balancer's port, for DON peers anywhere (networking_test.go TestP2PSecurityGroups)
		}
		port := r.rule["FromPort"]
		if !lbGroups[r.group] || port != r.rule["ToPort"] || (port != 80 && port != 443) {
			t.Errorf("%v is open to the internet (%s): only HTTP/HTTPS on the load balancer may be", r, why)
		}
	}

	// The parameter that opens SSH: no default, and it refuses /0 but takes an ordinary block.
	p := tpl.Parameters["RemoteAccessCIDR"]
	if _, ok := p["Default"]; ok {
		t.Errorf("RemoteAccessCIDR must have no default")
	}
	if re := regexp.MustCompile(p["AllowedPattern"].(string)); !re.MatchString("203.0.113.0/24") || !re.MatchString("198.51.100.7/32") {
		t.Errorf("RemoteAccessCIDR's pattern refuses ordinary CIDR blocks")
	}

	// The node hosts and the database: peers' security groups only, never a CIDR.
	nodeSG := ref(asList(get(tpl.Resources["ChainlinkNodeLaunchTemplate"].Properties, "LaunchTemplateData", "SecurityGroupIds"))[0])
	dbSGs := asList(tpl.Resources["ChainlinkDatabase"].Properties["VPCSecurityGroups"])
	if len(dbSGs) != 1 {
		t.Fatalf("database security groups: %v", dbSGs)
	}
	dbSG := ref(dbSGs[0])
	seenDB := false
	for _, r := range rules {
		switch r.group {
		case nodeSG:
			if r.rule["CidrIp"] != nil || r.rule["SourceSecurityGroupId"] == nil {
				t.Errorf("%v: the node hosts take traffic from security groups only", r)
			}
		case dbSG:
			seenDB = true
			if src := ref(r.rule["SourceSecurityGroupId"]); src != nodeSG || r.rule["CidrIp"] != nil {
				t.Errorf("%v: the database takes traffic from the node hosts (%s) only, not %v", r, nodeSG, src)
			}
		}
	}
	if !seenDB {
		t.Errorf("the database security group %s has no ingress from the node hosts", dbSG)
	}
}

// policyStatements returns every statement of every IAM policy in the template, labelled by where it is.
func policyStatements(tpl *template) map[string][]map[string]any {
	out := map[string][]map[string]any{}
	add := func(where string, doc any) {
		for _, s := range asList(get(doc, "Statement")) {
			for _, branch := range ifBranches(s) {
				out[where] = append(out[where], asMap(branch))
			}
		}
	}
	for id, r := range tpl.Resources {
		switch r.Type {
		case "AWS::IAM::Role":
			for _, p := range asList(r.Properties["Policies"]) {
				add(fmt.Sprintf("%s/%v", id, get(p, "PolicyName")), get(p, "PolicyDocument"))
			}
		case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy":
			add(id, r.Properties["PolicyDocument"])
		}
	}
	return out
}

func strs(v any) []string {
	var out []string
	for _, x := range asList(v) {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// wildcard reports whether a Resource value can be or contain "*": a literal, a Sub string, a Join's pieces,
// either branch of an If.
func wildcard(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, "*")
	case []any:
		return slices.ContainsFunc(x, wildcard)
	case map[string]any:
		if sub, ok := x["Fn::Sub"]; ok {
			return wildcard(asList(sub)[0])
		}
		if join, ok := x["Fn::Join"]; ok {
			return wildcard(asList(join)[1])
		}
		if ifs, ok := x["Fn::If"]; ok {
			return wildcard(asList(ifs)[1:])
		}
		return false // Ref, GetAtt: one resource
	}
	return true
}

// TestIAMIsLeastPrivilege: secrets and keys are granted on named resources only; the node role reads exactly
// the node's secrets, decrypts with exactly their key (through Secrets Manager), writes its own log groups and
// publishes to its own metric namespace.
func TestIAMIsLeastPrivilege(t *testing.T) {
	tpl := loadTemplate(t)
	stmts := policyStatements(tpl)
	if len(stmts) == 0 {
		t.Fatal("no IAM policy statements found")
	}
	for where, list := range stmts {
		for _, s := range list {
			if s["Effect"] != "Allow" {
				continue
			}
			actions := strs(s["Action"])
			if s["NotAction"] != nil || s["NotResource"] != nil {
				t.Errorf("%s: NotAction/NotResource grant more than they name", where)
			}
			for _, a := range actions {
				if a == "*" || strings.HasSuffix(a, ":*") {
					t.Errorf("%s: wildcard action %s", where, a)
				}
			}
			sensitive := slices.ContainsFunc(actions, func(a string) bool {
				return strings.HasPrefix(a, "secretsmanager:") || strings.HasPrefix(a, "kms:")
			})
			if sensitive && wildcard(s["Resource"]) {
				t.Errorf("%s: %v on a wildcard resource %v", where, actions, s["Resource"])
			}
			// The only statement allowed on "*" is PutMetricData (it has no resource-level permissions),
			// held to the agent's namespace by a condition.
			if wildcard(s["Resource"]) {
				ns := get(s["Condition"], "StringEquals", "cloudwatch:namespace")
				if !slices.Equal(actions, []string{"cloudwatch:PutMetricData"}) || ns != "ChainlinkNode/Agent" {
					t.Errorf("%s: %v on %v", where, actions, s["Resource"])
				}
			}
		}
	}

	// The node role's grants, one by one.
	role := tpl.mustResource(t, "ChainlinkNodeRole", "AWS::IAM::Role")
	byAction := map[string][]map[string]any{}
	for where, list := range stmts {
		if !strings.HasPrefix(where, "ChainlinkNodeRole/") {
			continue
		}
		for _, s := range list {
			for _, a := range strs(s["Action"]) {
				byAction[a] = append(byAction[a], s)
			}
		}
	}
	one := func(action string) map[string]any {
		if len(byAction[action]) != 1 {
			t.Fatalf("ChainlinkNodeRole: want one statement with %s, got %d", action, len(byAction[action]))
		}
		return byAction[action][0]
	}

	var secretRefs []string
	for _, r := range asList(one("secretsmanager:GetSecretValue")["Resource"]) {
		secretRefs = append(secretRefs, ref(r))
	}
	slices.Sort(secretRefs)
	if all := tpl.ofType("AWS::SecretsManager::Secret"); !slices.Equal(secretRefs, all) {
		t.Errorf("GetSecretValue on %v, want exactly the node's secrets %v", secretRefs, all)
	}

	decrypt := one("kms:Decrypt")
	if res := asList(decrypt["Resource"]); len(res) != 1 || !keyRef(tpl, res[0]) {
		t.Errorf("kms:Decrypt on %v, want exactly the secrets' key", decrypt["Resource"])
	}
	if via := get(decrypt["Condition"], "StringEquals", "kms:ViaService"); via == nil {
		t.Errorf("kms:Decrypt must be limited to Secrets Manager (kms:ViaService)")
	}

	for _, a := range []string{"logs:CreateLogStream", "logs:PutLogEvents"} {
		var groups []string
		for _, r := range asList(one(a)["Resource"]) {
			g, attr := getAtt(r)
			if attr != "Arn" || tpl.Resources[g].Type != "AWS::Logs::LogGroup" {
				t.Errorf("%s on %v: only the stack's own log groups", a, r)
			}
			groups = append(groups, g)
		}
		slices.Sort(groups)
		if !slices.Equal(groups, tpl.ofType("AWS::Logs::LogGroup")) {
			t.Errorf("%s on %v, want the stack's log groups", a, groups)
		}
	}
	if s := one("s3:GetObject"); wildcard(s["Resource"]) {
		t.Errorf("s3:GetObject on %v: only the agent archive", s["Resource"])
	}

	managed := asList(role.Properties["ManagedPolicyArns"])
	if len(managed) != 1 || !strings.HasSuffix(asList(get(managed[0], "Fn::Sub"))[0].(string), ":policy/AmazonSSMManagedInstanceCore") {
		t.Errorf("ChainlinkNodeRole managed policies %v: only AmazonSSMManagedInstanceCore (Session Manager)", managed)
	}
}

// TestNoPasswordPassesThroughTheTemplate: no NoEcho (password) parameters; the secrets are generated by Secrets
// Manager to the node's rules; the database's primary password comes straight from its secret.
func TestNoPasswordPassesThroughTheTemplate(t *testing.T) {
	tpl := loadTemplate(t)
	for name, p := range tpl.Parameters {
		if p["NoEcho"] != nil {
			t.Errorf("parameter %s is NoEcho: passwords are generated by Secrets Manager, never passed in", name)
		}
		if regexp.MustCompile(`(?i)password|secret`).MatchString(name) {
			t.Errorf("parameter %s looks like a password", name)
		}
	}
	for id, r := range tpl.Resources {
		if get(r.Attrs, "Metadata", "AWS::CloudFormation::Init") != nil {
			t.Errorf("%s uses cfn-init: its commands land in logs", id)
		}
	}
	for _, id := range tpl.ofType("AWS::SecretsManager::Secret") {
		p := tpl.Resources[id].Properties
		if p["SecretString"] != nil {
			t.Errorf("%s: SecretString set in the template", id)
		}
		gen := asMap(p["GenerateSecretString"])
		n, _ := gen["PasswordLength"].(int)
		if n < 16 || n > 50 {
			t.Errorf("%s: PasswordLength %v, the node wants 16 to 50", id, gen["PasswordLength"])
		}
		if gen["IncludeSpace"] == true {
			t.Errorf("%s: spaces could lead or trail the password", id)
		}
		// Without "@" a password cannot contain the API e-mail; RDS refuses / ' " @ in a primary password.
		ex, _ := gen["ExcludeCharacters"].(string)
		for _, c := range []string{"@", "/", "'", `"`} {
			if !strings.Contains(ex, c) {
				t.Errorf("%s: ExcludeCharacters %q lacks %q", id, ex, c)
			}
		}
		if tpl.Resources[id].Attrs["DeletionPolicy"] != "Retain" {
			t.Errorf("%s: must be retained (the keystore password is the only way to the node's keys)", id)
		}
	}
	db := tpl.mustResource(t, "ChainlinkDatabase", "AWS::RDS::DBInstance")
	pw, _ := get(db.Properties, "MasterUserPassword", "Fn::Sub").(string)
	if pw != "{{resolve:secretsmanager:${DBSecret}:SecretString:password}}" {
		t.Errorf("MasterUserPassword = %v, want a dynamic reference to DBSecret", db.Properties["MasterUserPassword"])
	}
}

// TestDatabase: private, TLS forced, backed up, protected from deletion.
func TestDatabase(t *testing.T) {
	tpl := loadTemplate(t)
	db := tpl.mustResource(t, "ChainlinkDatabase", "AWS::RDS::DBInstance")
	p := db.Properties
	if p["PubliclyAccessible"] != false {
		t.Errorf("PubliclyAccessible = %v, want false", p["PubliclyAccessible"])
	}
	if p["DeletionProtection"] != true {
		t.Errorf("DeletionProtection = %v, want true", p["DeletionProtection"])
	}
	if db.Attrs["DeletionPolicy"] != "Snapshot" || db.Attrs["UpdateReplacePolicy"] != "Snapshot" {
		t.Errorf("the database must leave a snapshot when deleted or replaced")
	}
	if ref(p["MultiAZ"]) != "DBMultiAZ" {
		t.Errorf("MultiAZ must follow the DBMultiAZ parameter")
	}
	backup := tpl.Parameters[ref(p["BackupRetentionPeriod"])]
	if min, _ := backup["MinValue"].(int); min < 1 {
		t.Errorf("backups: BackupRetentionPeriod must be a parameter with MinValue >= 1, got %v", p["BackupRetentionPeriod"])
	}
	pg := tpl.mustResource(t, ref(p["DBParameterGroupName"]), "AWS::RDS::DBParameterGroup")
	if v := get(pg.Properties, "Parameters", "rds.force_ssl"); v != "1" {
		t.Errorf("rds.force_ssl = %v, want '1'", v)
	}
	sng := tpl.mustResource(t, ref(p["DBSubnetGroupName"]), "AWS::RDS::DBSubnetGroup")
	for _, s := range asList(sng.Properties["SubnetIds"]) {
		for _, b := range ifBranches(s) {
			if n := ref(b); !strings.HasPrefix(n, "PrivateSubnet") {
				t.Errorf("database subnet %v is not a private subnet", n)
			}
		}
	}
}

// TestNodeHostsGroup: two hosts from one group, EC2 health checks (the standby fails /readyz by design), and
// stack creation waits for both to signal after `cl-agent check`.
func TestNodeHostsGroup(t *testing.T) {
	tpl := loadTemplate(t)
	const id = "ChainlinkNodeAutoScalingGroup"
	asg := tpl.mustResource(t, id, "AWS::AutoScaling::AutoScalingGroup")
	p := asg.Properties
	if p["HealthCheckType"] != "EC2" {
		t.Errorf("HealthCheckType = %v, want EC2: ELB checks would replace the standby forever", p["HealthCheckType"])
	}
	for _, k := range []string{"MinSize", "MaxSize", "DesiredCapacity"} {
		if p[k] != "2" {
			t.Errorf("%s = %v, want 2", k, p[k])
		}
	}
	sig := get(asg.Attrs, "CreationPolicy", "ResourceSignal")
	if get(sig, "Count") != 2 || get(sig, "Timeout") == nil {
		t.Errorf("CreationPolicy.ResourceSignal = %v, want Count 2 and a Timeout", sig)
	}
	if get(asg.Attrs, "UpdatePolicy", "AutoScalingRollingUpdate", "WaitOnResourceSignals") != true {
		t.Errorf("rolling updates must wait for the new host's signal")
	}
	for _, s := range asList(p["VPCZoneIdentifier"]) {
		for _, b := range ifBranches(s) {
			if n := ref(b); !strings.HasPrefix(n, "PrivateSubnet") {
				t.Errorf("node host subnet %v is not private", n)
			}
		}
	}
	header, _, body := nodeUserData(t, tpl)
	if !strings.Contains(header, "\nSIGNAL_RESOURCE='"+id+"'\n") {
		t.Errorf("the user-data must signal %s", id)
	}
	if !strings.Contains(body, "cfn-signal --exit-code") || !strings.Contains(body, "state=$(systemctl show -p ActiveState --value cl-agent.service)") {
		t.Errorf("the user-data must signal after the cl-agent unit itself reported ready")
	}
	if n := len(header) + len(body); n > 16384 {
		t.Errorf("user-data is %d bytes; EC2 takes at most 16384", n)
	}
}

// TestLoadBalancer: only with a certificate; HTTPS with a TLS 1.3 policy, HTTP redirected, health from cl-agent's
// /readyz.
func TestLoadBalancer(t *testing.T) {
	tpl := loadTemplate(t)
	for id, r := range tpl.Resources {
		if strings.Contains(id, "P2P") {
			continue // the P2P load balancer, on its own condition (networking_test.go)
		}
		lbPart := strings.HasPrefix(r.Type, "AWS::ElasticLoadBalancingV2::") ||
			id == "LoadBalancerSecurityGroup" || strings.HasSuffix(id, "FromLoadBalancer")
		if lbPart && r.Condition != "HasCertificate" {
			t.Errorf("%s must have Condition HasCertificate (no load balancer without a certificate)", id)
		}
	}
	if !strings.Contains(fmt.Sprint(tpl.Conditions["HasCertificate"]), "SSLCertificateARN") {
		t.Errorf("HasCertificate must depend on SSLCertificateARN")
	}
	if tpl.Parameters["SSLCertificateARN"]["Default"] != "" {
		t.Errorf("SSLCertificateARN must default to empty")
	}

	var https, http []map[string]any
	for _, id := range tpl.ofType("AWS::ElasticLoadBalancingV2::Listener") {
		if strings.Contains(id, "P2P") {
			continue
		}
		p := tpl.Resources[id].Properties
		switch p["Protocol"] {
		case "HTTPS":
			https = append(https, p)
		case "HTTP":
			http = append(http, p)
		default:
			t.Errorf("%s: protocol %v", id, p["Protocol"])
		}
	}
	if len(https) != 1 || len(http) != 1 {
		t.Fatalf("want one HTTPS and one HTTP listener, got %d and %d", len(https), len(http))
	}
	modern := []string{"ELBSecurityPolicy-TLS13-1-2-2021-06", "ELBSecurityPolicy-TLS13-1-2-Res-2021-06", "ELBSecurityPolicy-TLS13-1-3-2021-06"}
	if !slices.Contains(modern, fmt.Sprint(https[0]["SslPolicy"])) {
		t.Errorf("HTTPS SslPolicy %v is not a modern TLS 1.3 policy", https[0]["SslPolicy"])
	}
	if ref(get(asList(https[0]["Certificates"])[0], "CertificateArn")) != "SSLCertificateARN" {
		t.Errorf("the HTTPS listener must use SSLCertificateARN")
	}
	redirect := asMap(asList(http[0]["DefaultActions"])[0])
	if redirect["Type"] != "redirect" || get(redirect, "RedirectConfig", "Protocol") != "HTTPS" ||
		get(redirect, "RedirectConfig", "StatusCode") != "HTTP_301" {
		t.Errorf("HTTP must redirect to HTTPS, got %v", redirect)
	}

	tg := tpl.mustResource(t, "ChainlinkNodeTargetGroup", "AWS::ElasticLoadBalancingV2::TargetGroup").Properties
	if tg["HealthCheckPath"] != "/readyz" || tg["HealthCheckPort"] != "9180" || get(tg, "Matcher", "HttpCode") != "200" {
		t.Errorf("target health must be cl-agent's /readyz on 9180 answering 200, got %v %v %v",
			tg["HealthCheckPath"], tg["HealthCheckPort"], get(tg, "Matcher", "HttpCode"))
	}
	if tg["Port"] != 6688 {
		t.Errorf("the UI is on port 6688, target group port %v", tg["Port"])
	}
	_, vars, _ := nodeUserData(t, tpl)
	listen := asList(get(vars["HealthListen"], "Fn::If"))
	if len(listen) != 3 || listen[0] != "AgentHealthChecked" || listen[1] != "0.0.0.0:9180" || listen[2] != "127.0.0.1:9180" ||
		!strings.Contains(fmt.Sprint(tpl.Conditions["AgentHealthChecked"]), "HasCertificate") {
		t.Errorf("cl-agent must listen on 0.0.0.0:9180 with a load balancer and on loopback without, got %v", listen)
	}
}

// TestAlarms: the agent's metrics raise alarms to the topic the e-mail parameter subscribes to.
func TestAlarms(t *testing.T) {
	tpl := loadTemplate(t)
	metrics := map[string]bool{}
	for _, id := range tpl.ofType("AWS::CloudWatch::Alarm") {
		p := tpl.Resources[id].Properties
		for _, m := range asList(p["Metrics"]) {
			expr, _ := get(m, "Expression").(string)
			if !strings.Contains(expr, `FROM SCHEMA("ChainlinkNode/Agent", InstanceId)`) {
				t.Errorf("%s: %q does not aggregate the agent's namespace over all instances", id, expr)
			}
			for _, name := range []string{"WalletBalanceLow", "ActiveNodes", "Failovers", "KeystoreRotationHeld"} {
				if strings.Contains(expr, "("+name+")") {
					metrics[name] = true
				}
			}
		}
		if actions := asList(p["AlarmActions"]); len(actions) != 1 || ref(actions[0]) != "AlarmTopic" {
			t.Errorf("%s: AlarmActions %v, want the alarm topic", id, actions)
		}
	}
	for _, name := range []string{"WalletBalanceLow", "ActiveNodes", "Failovers", "KeystoreRotationHeld"} {
		if !metrics[name] {
			t.Errorf("no alarm on %s", name)
		}
	}
	topic := tpl.mustResource(t, "AlarmTopic", "AWS::SNS::Topic")
	subs := ifBranches(topic.Properties["Subscription"])
	if len(subs) != 2 || ref(get(asList(subs[0])[0], "Endpoint")) != "EmailAddress" {
		t.Errorf("the topic's subscription must be the EmailAddress parameter, got %v", subs)
	}
	for _, id := range tpl.ofType("AWS::DevOpsGuru::ResourceCollection") {
		if tpl.Resources[id].Condition != "EnableDevOpsGuru" {
			t.Errorf("%s must depend on EnableAmazonDevOpsGuru", id)
		}
	}
}

// TestOutputs: what an operator needs after the stack is up.
func TestOutputs(t *testing.T) {
	tpl := loadTemplate(t)
	for _, name := range []string{
		"ChainlinkNodeUIURL", "BastionAutoScalingGroupName", "NodeAutoScalingGroupName", "DatabaseEndpoint", "DatabasePort",
		"DBSecretArn", "ApiSecretArn", "WalletSecretArn", "NodeLogGroup", "AgentLogGroup",
	} {
		if _, ok := tpl.Outputs[name]; !ok {
			t.Errorf("no output %s", name)
		}
	}
	for name := range tpl.Outputs {
		_, isParam := tpl.Parameters[name]
		_, isRes := tpl.Resources[name]
		if isParam || isRes {
			t.Errorf("output %s has the name of a parameter or resource", name)
		}
	}
}
