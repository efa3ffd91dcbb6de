package ca

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"cheshire/plan9"
	"cheshire/synth"

	"golang.org/x/crypto/ssh"
)

// Files returns a server of the CA's files:
//
//	/ca/root.pem              the root certificate
//	/ca/intermediate.pem      the intermediate, which signs everything else
//	/ca/crl.pem               the revocation list
//	/ca/ctl                   commands; reads give the CA's status
//	/ca/csr                   write a request, read the chain on the same fid
//	/ca/backup                the sealed backup (see backup and restore)
//	/ca/certs/NAME/cert.pem   an issued certificate
//	/ca/certs/NAME/key.pem    its key (owner only)
//	/ca/certs/NAME/chain.pem  the certificate and the intermediate
//	/ca/certs/NAME/info       key value lines
//	/ca/ssh/ca.pub            the SSH CA's public key
//	/ca/ssh/certs/NAME-cert.pub  issued SSH certificates
//	/ca/acme/policy           the ACME policy in force
//	/ca/acme/eab/KID          an external account key (owner only)
//
// Each call makes a new tree; the files are owned by Options.Owner.
func (c *CA) Files() *synth.Server {
	root := synth.NewDir("ca", 0555)
	pemFile := func(name string, get func() []byte) *synth.File {
		return synth.Snapshot(name, 0444, func(context.Context) ([]byte, error) { return get(), nil })
	}
	certs := synth.NewDir("certs", 0555)
	certs.SetGen(synth.GenNames(func(context.Context) []string { return c.Names() }, c.certDir))
	sshDir := synth.NewDir("ssh", 0555)
	sshCerts := synth.NewDir("certs", 0555)
	sshCerts.SetGen(synth.GenNames(func(context.Context) []string { return c.SSHCertNames() }, c.sshCertFile))
	acmeD := synth.NewDir("acme", 0555)
	eab := synth.NewDir("eab", 0500)
	eab.SetGen(synth.GenNames(func(context.Context) []string { return c.EABKeyIDs() }, c.eabKeyFile))
	for _, err := range []error{
		root.Add(pemFile("root.pem", c.RootPEM)),
		root.Add(pemFile("intermediate.pem", c.IntermediatePEM)),
		root.Add(synth.Snapshot("crl.pem", 0444, func(context.Context) ([]byte, error) { return c.CRL() })),
		root.Add(synth.CtlBatch("ctl", 0600, c.commands(), func(context.Context) string { return c.Status() }, c.batch)),
		// Each open of csr is a signing session: writes gather a request,
		// the first read signs it and gives the chain (or the refusal).
		root.Add(synth.Query("csr", 0600, c.signCSR, synth.Gather(maxCSR))),
		root.Add(synth.ReadWrite("backup", 0600,
			func(context.Context) ([]byte, error) { return c.BackupText(), nil },
			func(_ context.Context, data []byte) error { return c.SetBackupText(data) })),
		root.Add(certs),
		root.Add(sshDir),
		sshDir.Add(pemFile("ca.pub", c.SSHCAPub)),
		sshDir.Add(sshCerts),
		root.Add(acmeD),
		acmeD.Add(synth.Snapshot("policy", 0444, func(context.Context) ([]byte, error) { return c.PolicyText(), nil })),
		acmeD.Add(eab),
	} {
		if err != nil {
			panic(fmt.Sprintf("ca: building tree: %v", err)) // names are constant and distinct
		}
	}
	owner := c.opts.Owner
	if owner == "" {
		owner = "none"
	}
	return synth.NewServer(root, synth.WithOwner(owner), synth.WithClock(c.now))
}

// The generated directories (certs, ssh/certs, acme/eab) are listed by
// synth.GenNames, which keeps one node for each name while it is listed.

// certDir is the directory of the certificate name.
func (c *CA) certDir(name string) synth.Node {
	d := synth.NewDir(name, 0555)
	part := func(pick func(*Issued) []byte) func(context.Context) ([]byte, error) {
		return func(context.Context) ([]byte, error) {
			is, ok := c.Get(name)
			if !ok {
				return nil, plan9.ErrNotFound
			}
			return pick(is), nil
		}
	}
	d.Add(synth.Snapshot("cert.pem", 0444, part(func(is *Issued) []byte { return is.CertPEM })))
	d.Add(synth.Snapshot("key.pem", 0400, part(func(is *Issued) []byte { return is.KeyPEM })))
	d.Add(synth.Snapshot("chain.pem", 0444, part(func(is *Issued) []byte { return is.ChainPEM })))
	d.Add(synth.Snapshot("info", 0444, func(context.Context) ([]byte, error) {
		s, err := c.Info(name)
		if err != nil {
			return nil, plan9.ErrNotFound
		}
		return []byte(s), nil
	}))
	return d
}

// sshCertFile is the file of the SSH certificate name.
func (c *CA) sshCertFile(n string) synth.Node {
	return synth.Snapshot(n+sshCertSufx, 0444, func(context.Context) ([]byte, error) {
		data, err := c.SSHCert(n)
		if err != nil {
			return nil, plan9.ErrNotFound
		}
		return data, nil
	})
}

// eabKeyFile is the file of the external account key k.
func (c *CA) eabKeyFile(k string) synth.Node {
	return synth.Snapshot(k, 0400, func(context.Context) ([]byte, error) {
		text, ok := c.EABText(k)
		if !ok {
			return nil, plan9.ErrNotFound
		}
		return text, nil
	})
}

// Status is the text of ctl: "key value" lines.
func (c *CA) Status() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%s %s\n", k, v) }
	kv("root", plan9.Quote(c.root.Subject.String()))
	kv("root-not-after", c.root.NotAfter.UTC().Format(time.RFC3339))
	kv("intermediate", plan9.Quote(c.inter.Subject.String()))
	kv("intermediate-not-after", c.inter.NotAfter.UTC().Format(time.RFC3339))
	kv("certs", fmt.Sprint(len(c.certs)))
	kv("revoked", fmt.Sprint(len(c.revoked)))
	kv("ssh-ca", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(c.ssh.PublicKey()))))
	return b.String()
}

// Usages of the ctl commands.
const (
	usageIssue   = "issue NAME [san...] [ttl=DURATION]"
	usageRevoke  = "revoke SERIAL [reason]"
	usageRenew   = "renew NAME"
	usageSSHUser = "ssh-user NAME [ttl=DURATION] PRINCIPALS PUBKEY-TEXT..."
	usageSSHHost = "ssh-host NAME [ttl=DURATION] [principals=P,...] PUBKEY-TEXT..."
	usageBackup  = "backup PASSPHRASE"
	usageRestore = "restore PASSPHRASE"
	usageEABAdd  = "eab add KID [HMAC-BASE64URL]"
	usageEABDel  = "eab remove KID"
)

func usage(u string) error { return errors.New("usage: " + u) }

// commands is the command table of ctl.
func (c *CA) commands() []synth.Cmd {
	return []synth.Cmd{
		{Name: "issue", Min: 1, Max: -1, Usage: usageIssue, Run: func(ctx context.Context, args []string) error {
			var sans []string
			var ttl time.Duration
			for _, w := range args[1:] {
				if v, ok := strings.CutPrefix(w, "ttl="); ok {
					d, err := parseTTL(v)
					if err != nil {
						return err
					}
					ttl = d
					continue
				}
				sans = append(sans, w)
			}
			_, err := c.issue(args[0], sans, ttl)
			return err
		}},
		{Name: "revoke", Min: 1, Max: 2, Usage: usageRevoke, Run: func(ctx context.Context, args []string) error {
			reason := ""
			if len(args) == 2 {
				reason = args[1]
			}
			return c.revoke(args[0], reason)
		}},
		{Name: "renew", Min: 1, Max: 1, Usage: usageRenew, Run: func(ctx context.Context, args []string) error {
			_, err := c.renew(args[0])
			return err
		}},
		{Name: "ssh-user", Min: 4, Max: -1, Usage: usageSSHUser, Run: func(ctx context.Context, args []string) error {
			name, ttl, rest, err := sshArgs(args)
			if err != nil || len(rest) < 3 {
				return orUsage(err, usageSSHUser)
			}
			pub, err := ParseSSHKey(strings.Join(rest[1:], " "))
			if err != nil {
				return err
			}
			_, err = c.signSSHUser(name, strings.Split(rest[0], ","), pub, ttl)
			return err
		}},
		{Name: "ssh-host", Min: 3, Max: -1, Usage: usageSSHHost, Run: func(ctx context.Context, args []string) error {
			name, ttl, rest, err := sshArgs(args)
			if err != nil || len(rest) < 2 {
				return orUsage(err, usageSSHHost)
			}
			var principals []string
			if v, ok := strings.CutPrefix(rest[0], "principals="); ok {
				principals = strings.Split(v, ",")
				rest = rest[1:]
				if len(rest) < 2 {
					return usage(usageSSHHost)
				}
			}
			pub, err := ParseSSHKey(strings.Join(rest, " "))
			if err != nil {
				return err
			}
			_, err = c.signSSHHost(name, principals, pub, ttl)
			return err
		}},
		// The lines of backup, restore and eab add carry a passphrase
		// or a key: Secret keeps them out of errors.
		{Name: "backup", Min: 1, Max: 1, Secret: true, Usage: usageBackup, Run: func(ctx context.Context, args []string) error {
			text, err := c.Backup(args[0])
			if err != nil {
				return err
			}
			return c.setBackupText(text)
		}},
		{Name: "eab add", Min: 1, Max: 2, Secret: true, Usage: usageEABAdd, Run: func(ctx context.Context, args []string) error {
			var key []byte
			if len(args) == 2 {
				k, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(args[1], "="))
				if err != nil {
					return errors.New("ca: hmac key is not base64url")
				}
				key = k
			}
			return c.addEAB(args[0], key)
		}},
		{Name: "eab remove", Min: 1, Max: 1, Usage: usageEABDel, Run: func(ctx context.Context, args []string) error {
			return c.removeEAB(args[0])
		}},
		{Name: "restore", Min: 1, Max: 1, Secret: true, Usage: usageRestore, Run: func(ctx context.Context, args []string) error {
			return c.restore(c.BackupText(), args[0])
		}},
	}
}

func orUsage(err error, u string) error {
	if err != nil {
		return err
	}
	return usage(u)
}

// sshArgs takes NAME and an optional ttl=DURATION from the words of an
// ssh command.
func sshArgs(args []string) (name string, ttl time.Duration, rest []string, err error) {
	if len(args) < 1 {
		return "", 0, nil, nil
	}
	name, rest = args[0], args[1:]
	if len(rest) > 0 {
		if v, ok := strings.CutPrefix(rest[0], "ttl="); ok {
			if ttl, err = parseTTL(v); err != nil {
				return "", 0, nil, err
			}
			rest = rest[1:]
		}
	}
	return name, ttl, rest, nil
}

// signCSR is the answer of csr: the chain of the request req, signed.
func (c *CA) signCSR(ctx context.Context, req []byte) ([]byte, error) {
	if req == nil {
		return nil, errors.New("ca: write a certificate request first")
	}
	return c.SignCSRPEM(req, 0)
}
