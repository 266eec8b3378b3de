// Package message is RocketMQ's message layout as Strata stores it and sends it: the stored
// record (the commit-log and pull-body format, see FORMAT.md), the properties string, the
// system flags, the offset message id, and the batch body that SEND_BATCH_MESSAGE carries.
//
// Start with Message, AppendEncoded and Decode; the store uses ParseRecordHeader and
// PatchAppendFields to index and stamp records without copying bodies.
package message
