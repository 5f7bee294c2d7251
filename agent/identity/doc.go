// Package identity learns who and where this host is: its instance id, region, availability zone and private
// address, from the EC2 instance metadata service (IMDSv2 only, never the token-less v1 protocol).
//
// Resolve retries IMDS with backoff within a bound. Without an answer it fails with ErrIMDSUnavailable, unless the
// configuration names both instance.id and instance.region: then it returns those with a warning, so a host off EC2
// can run. The configured values always override what IMDS says.
package identity
