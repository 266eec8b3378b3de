// Package acl is access control as RocketMQ's clients sign it: request signatures and the
// permissions of RocketMQ's plain ACL, with the accounts kept in etcd.
//
// Start reading at Checker (checker.go): New loads the accounts through a meta.ACLView and
// follows every change, so a change made through any broker holds on every broker within the
// etcd watch's latency (milliseconds; no restart). Check runs before a request is served; its
// decision, in order:
//
//  1. Requirements (resource.go) says what the request needs: admin, or PUB/SUB on topics
//     and consumer groups, as RocketMQ's PlainAccessResource.parse does, extended to every
//     code Strata serves. A group's permission is RocketMQ's %RETRY%<group> resource.
//  2. Route lookups are answered unchecked when Config.PublicRoutes is on (RocketMQ 4.x name
//     servers check nothing): a client with a bad key then learns why from the broker's
//     refusal, which names the key, instead of "route info not found".
//  3. An address on the global whitelist (acl/whitelist) may do everything but admin
//     requests without keys.
//  4. Otherwise the request must carry an AccessKey of a known account and a Signature made
//     with its secret key (remoting/sign.go has the algorithm: HMAC-SHA1, base64, over the
//     values of all extFields in ascending key order, then the body). An address on the
//     account's own whitelist (whiteRemoteAddress) needs no signature for that key.
//  5. Admin requests need an admin account; resources need the account's permission: the
//     explicit entry for the topic or group, else the account's default (DENY for topics
//     and SUB for groups unless set, as RocketMQ's sample plain_acl.yml). Permissions are
//     DENY, PUB, SUB and PUB|SUB; DENY wins.
//
// A refusal is RocketMQ's NO_PERMISSION (16) with a remark naming the access key, the
// resource and the permission missing, never a secret:
//
//	No permission: access key "app1" needs PUB on topic orders; an admin grants it with ...
//	signature mismatch for access key "app1": check the secret key
//	unknown access key "x"; an admin creates it with ...
//
// Refusals are logged at most once per 10 s per access key (per address for unsigned
// requests), with the count of refusals the line stands for (faillog.go).
//
// Where Strata differs from RocketMQ's plain ACL, it is stricter unless noted:
//
//   - An account's whitelist skips only the signature; RocketMQ also skips the permission
//     check. The global whitelist never grants admin requests.
//   - Admin accounts are checked against their explicit entries only (an explicit DENY
//     holds); RocketMQ applies an admin's defaults as soon as it has any entry.
//   - CONSUMER_SEND_MSG_BACK needs SUB on the group and on the stored message's topic
//     (RocketMQ: PUB on the topic the client names), and VIEW_MESSAGE_BY_ID needs SUB on the
//     stored message's topic (RocketMQ: nothing); the broker checks both once it has read
//     the message (Checker.Authorize). Offset reads and commits need SUB on the topic and
//     group; RocketMQ checks only commits.
//   - An unknown permission name is an error, not DENY.
//   - END_TRANSACTION needs only a valid signature; the transaction handler must check PUB
//     on the half message's topic with Authorize once it has read it.
//
// Signatures cover neither the request code nor a time, in RocketMQ's protocol: a captured
// request can be replayed, or sent under another code with the same header fields (an
// admin's signed GET_TOPIC_STATS_INFO{topic} is a valid DELETE_TOPIC_IN_BROKER{topic}).
// Strata's own clients sign StrataCode and StrataSignedAt (remoting.Credentials.BindRequest),
// and Check refuses such a request under another code or older than MaxSignatureAge. For
// RocketMQ's clients only TLS protects requests on an untrusted network: enable it
// (remoting.ServerTLS) wherever ACL matters.
//
// # Secrets
//
// Secret keys are stored in etcd as given (meta/acl.go): verifying an HMAC needs the secret
// itself, so it cannot be hashed. Whoever reads /strata/<cluster>/acl/ in etcd can act as
// any account. etcd must therefore run with authentication and TLS (client certificates or
// users with roles limited to the cluster prefix, and TLS on client and peer URLs); Strata
// reaches such an etcd with meta.Config's TLS, Username and Password. Secrets are never
// logged (remoting.Command.String redacts them), never answered by any request (account
// lists carry access keys and permissions only), and travel only in
// UPDATE_AND_CREATE_ACL_CONFIG, which should go over TLS.
//
// # Management
//
// ServeAdmin (admin.go) serves RocketMQ's ACL codes 50–54 and Strata's 9110 (grant) and
// 9111 (revoke), so mqadmin's updateAclConfig, deleteAclConfig, clusterAclConfigVersion and
// updateGlobalWhiteAddr work, and `strata acl` uses the same requests. See admin.go for the
// fields of each.
package acl
