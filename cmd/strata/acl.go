package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stratamq/strata/broker/acl"
	"github.com/stratamq/strata/broker/remoting"
)

const aclUsage = `usage: strata acl <command> [flags]

  user create --access-key AK --secret-key SK [--admin] [--default-topic-perm P] [--default-group-perm P] [--white-addr A]
  user update --access-key AK [--secret-key SK] [--admin=true|false] [--default-topic-perm P] [--default-group-perm P] [--white-addr A]
  user delete --access-key AK
  user list [--json]
  grant  --access-key AK (--topic T | --group G) --perm DENY, PUB, SUB or 'PUB|SUB'
  revoke --access-key AK (--topic T | --group G)
  whitelist set ADDR[,ADDR...]   (192.168.0.*, 10.0.0.1-100, 10.0.0.0/8; "" clears it)
  whitelist show

Every request needs an admin account: sign with STRATA_ACCESS_KEY and STRATA_SECRET_KEY, or
with --access-key/--secret-key before "acl" (strata --access-key A --secret-key S acl ...);
after "acl", --access-key names the account managed (in user list and whitelist, which manage
no account, it signs). New accounts may use no topic (DENY)
and consume as any group (SUB) until granted more. Changes hold on every broker at once`

func aclCmd() *cobra.Command {
	sub := func(name, short string, args cobra.PositionalArgs) *cobra.Command {
		use := strings.TrimPrefix(strings.TrimPrefix(name, "user "), "whitelist ")
		if name == "whitelist set" {
			use = "set [ADDR[,ADDR...]]"
		}
		return leaf(use, short, aclUsage, args, func(fs *pflag.FlagSet) runFunc { return aclFlags(name, fs) })
	}
	return parent("acl", "access-control accounts: users and their topic and group permissions", aclUsage,
		parent("user", "create, update, delete or list ACL accounts", aclUsage,
			sub("user create", "create an account", nil),
			sub("user update", "change an account's secret, admin flag, defaults or white address", nil),
			sub("user delete", "delete an account", nil),
			sub("user list", "list the accounts and their permissions", nil),
		),
		sub("grant", "grant an account a permission on a topic or group", nil),
		sub("revoke", "drop an account's permission on a topic or group", nil),
		parent("whitelist", "the global address whitelist", aclUsage,
			sub("whitelist set", "set the global whitelist (no address clears it)", cobra.ArbitraryArgs),
			sub("whitelist show", "print the global whitelist", nil),
		),
	)
}

func aclFlags(sub string, fs *pflag.FlagSet) runFunc {
	ak := fs.String("access-key", "", "the account's access key")
	sk := fs.String("secret-key", "", "the account's secret key (create; update to change it)")
	admin := fs.Bool("admin", false, "the account may create and delete topics, reset offsets and manage ACL")
	topicPerm := fs.String("default-topic-perm", "", "permission on topics not granted one by one (default DENY)")
	groupPerm := fs.String("default-group-perm", "", "permission on consumer groups not granted one by one (default SUB)")
	white := fs.String("white-addr", "", "addresses whose requests under this key need no signature (RocketMQ patterns)")
	topic := fs.String("topic", "", "topic of the grant or revoke")
	group := fs.String("group", "", "consumer group of the grant or revoke")
	perm := fs.String("perm", "", "DENY, PUB, SUB or PUB|SUB")
	asJSON := fs.Bool("json", false, "list as JSON")
	return func(ctx context.Context, args []string, stdout io.Writer) error {
		set := map[string]bool{}
		fs.Visit(func(f *pflag.Flag) { set[f.Name] = true })

		if sub == "user list" || strings.HasPrefix(sub, "whitelist ") {
			// No account is managed here: --access-key and --secret-key can only mean who signs.
			if set["access-key"] || set["secret-key"] {
				cliSecurity.AccessKey, cliSecurity.SecretKey = *ak, *sk
			}
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := dialClient(ctx, namesrvAddr())
		if err != nil {
			return err
		}
		defer c.Close()
		call := func(code int16, ext remoting.ExtFields) error {
			_, err := c.ACL(ctx, code, ext)
			return err
		}
		needKey := func() error {
			if *ak == "" {
				return fmt.Errorf("acl %s: --access-key is required", sub)
			}
			return nil
		}
		switch sub {
		case "user create", "user update":
			if err := needKey(); err != nil {
				return err
			}
			mode := acl.ModeCreate
			if sub == "user update" {
				mode = acl.ModeUpdate
			} else if *sk == "" {
				return errors.New("acl user create: --secret-key is required")
			}
			ext := remoting.ExtFields{"accessKey": *ak, acl.ExtMode: mode}
			if *sk != "" {
				ext["secretKey"] = *sk
			}
			if set["admin"] || mode == acl.ModeCreate {
				ext["admin"] = strconv.FormatBool(*admin)
			}
			if set["default-topic-perm"] {
				ext["defaultTopicPerm"] = *topicPerm
			}
			if set["default-group-perm"] {
				ext["defaultGroupPerm"] = *groupPerm
			}
			if set["white-addr"] {
				ext["whiteRemoteAddress"] = *white
			}
			if err := call(remoting.CodeUpdateAndCreateACLConfig, ext); err != nil {
				return fmt.Errorf("acl %s %s: %w", sub, *ak, err)
			}
			verb := "created"
			if mode == acl.ModeUpdate {
				verb = "updated"
			}
			fmt.Fprintf(stdout, "%s ACL account %s\n", verb, *ak)
		case "user delete":
			if err := needKey(); err != nil {
				return err
			}
			if err := call(remoting.CodeDeleteACLConfig, remoting.ExtFields{"accessKey": *ak}); err != nil {
				return fmt.Errorf("acl user delete %s: %w", *ak, err)
			}
			fmt.Fprintf(stdout, "deleted ACL account %s\n", *ak)
		case "user list":
			cv, err := c.ACLConfig(ctx)
			if err != nil {
				return err
			}
			if jsonOutput(*asJSON) {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(cv)
			}
			tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "ACCESS KEY\tADMIN\tTOPICS (default)\tGROUPS (default)\tWHITELIST")
			for _, a := range cv.PlainAccessConfigs {
				fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\n", a.AccessKey, a.Admin,
					permCell(a.TopicPerms, a.DefaultTopicPerm), permCell(a.GroupPerms, a.DefaultGroupPerm), dash(a.WhiteRemoteAddress))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "global whitelist: %s\n", dash(strings.Join(cv.GlobalWhiteAddrs, ",")))
		case "grant", "revoke":
			if err := needKey(); err != nil {
				return err
			}
			if (*topic == "") == (*group == "") {
				return fmt.Errorf("acl %s: name either --topic or --group", sub)
			}
			ext := remoting.ExtFields{"accessKey": *ak}
			what := "topic " + *topic
			if *topic != "" {
				ext["topic"] = *topic
			} else {
				ext["group"] = *group
				what = "group " + *group
			}
			code := remoting.CodeACLRevoke
			if sub == "grant" {
				if *perm == "" {
					return errors.New("acl grant: --perm is required (DENY, PUB, SUB or PUB|SUB)")
				}
				p, err := acl.ParsePerm(*perm)
				if err != nil {
					return fmt.Errorf("acl grant: --perm: %w", err)
				}
				ext["perm"], code = p.String(), remoting.CodeACLGrant
			}
			if err := call(code, ext); err != nil {
				return fmt.Errorf("acl %s %s on %s: %w", sub, *ak, what, err)
			}
			if sub == "grant" {
				fmt.Fprintf(stdout, "granted %s on %s to %s\n", ext["perm"], what, *ak)
			} else {
				fmt.Fprintf(stdout, "revoked %s's permission on %s (the account's default applies again)\n", *ak, what)
			}
		case "whitelist set":
			addrs := strings.Join(args, ",")
			if err := call(remoting.CodeUpdateGlobalWhiteAddrsConfig, remoting.ExtFields{"globalWhiteAddrs": addrs}); err != nil {
				return fmt.Errorf("acl whitelist set: %w", err)
			}
			fmt.Fprintf(stdout, "global whitelist: %s\n", dash(addrs))
		case "whitelist show":
			cv, err := c.ACLConfig(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, dash(strings.Join(cv.GlobalWhiteAddrs, ",")))
		default:
			return fmt.Errorf("unknown acl command %q\n\n%s", sub, aclUsage)
		}
		return nil
	}
}

func permCell(list []string, def string) string {
	if len(list) == 0 {
		return "(" + def + ")"
	}
	return strings.Join(list, ",") + " (" + def + ")"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
