package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/gateway/auth"
)

// defaultAdminSubject is the subject of an admin token made without --sub.
const defaultAdminSubject = "admin"

func runToken(_ context.Context, args []string) error {
	return tokenCommand(args, os.Stdout, os.Stderr)
}

// tokenCommand prints an HS256 token for the dev stack: signed with the
// secret the gateway of `orderflow dev` verifies with (auth.DevSecret),
// or with the one in --secret-file.
func tokenCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", "", "the token's role: admin or customer (required)")
	sub := fs.String("sub", "", `the subject: the customer_id for --role customer (required there); default "admin" for --role admin`)
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	secretFile := fs.String("secret-file", "", "sign with the HS256 secret in this file instead of the dev stack's")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: orderflow token --role admin|customer [--sub ID] [flags]

Prints a bearer token that the dev stack's gateway accepts:

  curl -H "Authorization: Bearer $(orderflow token --role customer --sub c-42)" \
       http://localhost:8080/api/orders

The token is signed with HS256 with the dev stack's secret: the value of
ORDERFLOW_JWT_SECRET when set, else the one kept in
$XDG_CONFIG_HOME/orderflow/dev-jwt-secret (~/.config/...), made on first use.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	p := auth.Principal{Subject: *sub, Role: auth.Role(*role)}
	switch p.Role {
	case auth.RoleAdmin:
		if p.Subject == "" {
			p.Subject = defaultAdminSubject
		}
		if err := p.Validate(); err != nil {
			return usagef("token: --sub %q must be 1 to %d printable ASCII characters", p.Subject, auth.MaxSubjectLength)
		}
	case auth.RoleCustomer:
		if p.Subject == "" {
			return usagef("token: --role customer needs --sub, the customer_id (e.g. --sub c-42)")
		}
		if !domain.ValidExternalID(p.Subject) {
			return usagef("token: --sub %q is not a customer_id: it %s", p.Subject, domain.ExternalIDRule)
		}
	case "":
		fs.Usage()
		return usagef("token: --role is required (admin or customer)")
	default:
		return usagef("token: unknown --role %q (want admin or customer)", *role)
	}
	if *ttl <= 0 {
		return usagef("token: --ttl %s must be positive", *ttl)
	}

	var (
		secret []byte
		err    error
	)
	if *secretFile != "" {
		secret, err = auth.ReadSecretFile(*secretFile)
	} else {
		secret, err = auth.DevSecret()
	}
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	token, err := auth.Sign(secret, p, *ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, token)
	return err
}
