// Hello is the smallest useful cheshire module, the one package sdk's
// documentation shows: /greeting greets the reader, and writing to /ctl
// changes the greeting.
package main

import (
	"context"
	"strings"

	"cheshire/modules/sdk"
)

func main() {}

func init() {
	greeting := "hello"
	sdk.Serve(sdk.NewDir("/", 0555,
		sdk.Gen("greeting", 0444, func(ctx context.Context) ([]byte, error) {
			return []byte(greeting + ", " + sdk.User(ctx) + "\n"), nil
		}),
		sdk.Ctl("ctl", 0222, nil, func(ctx context.Context, data []byte) error {
			greeting = strings.TrimSpace(string(data))
			return nil
		}),
	))
}
