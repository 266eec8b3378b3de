package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/stratamq/strata/broker/remoting"
)

// adminInvoke sends one admin request to addr (a name server or a broker) with the command's
// credentials and TLS, and turns an answer other than success into an error with its remark.
func adminInvoke(ctx context.Context, addr string, code int16, ext remoting.ExtFields) (*remoting.Command, error) {
	rc, err := dialBroker(ctx, addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer rc.Close()
	resp, err := rc.Invoke(ctx, remoting.NewRequest(code, ext, nil))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	if resp.Code != remoting.RespSuccess {
		return resp, fmt.Errorf("%s answered code %d: %s", addr, resp.Code, resp.Remark)
	}
	return resp, nil
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
