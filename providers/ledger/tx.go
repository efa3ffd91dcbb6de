package ledger

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"cheshire/nodekey"
)

// A transaction is one line of text, its last word the signature of
// the rest by the signer's ed25519 key (hex):
//
//	transfer FROM TO AMOUNT NONCE SIG              signed by FROM
//	contract open PAYER ID HOLDER PRICE DAYS NONCE SIG   signed by PAYER
//	contract settle SIGNER ID NONCE SIG            signed by the payer or the holder
//	endpoint KEY ADDR[,ADDR...] NONCE SIG          signed by KEY
//
// What is signed is sigContext, a space, and the line without its
// signature, words separated by single spaces. Keys are z-base-32
// ed25519 keys; AMOUNT, PRICE, DAYS and NONCE decimal, without sign.

const sigContext = "cheshire-ledger-v1"

// Limits of a transaction.
const (
	maxTxLine  = 1024
	maxAmount  = 1 << 62 // no amount, price or balance reaches this: sums of two never overflow
	maxDays    = 3650
	maxIDLen   = 64
	maxAddrs   = 8
	maxAddrLen = 128
)

// Tx is a parsed transaction.
type Tx struct {
	Verb   string // transfer, contract, endpoint
	Op     string // for contract: open or settle
	Signer string
	To     string   // transfer
	Amount uint64   // transfer: AMOUNT; contract open: PRICE
	ID     string   // contract
	Holder string   // contract open
	Days   uint64   // contract open
	Addrs  []string // endpoint
	Nonce  uint64
	Body   string // the line without its signature
	Sig    []byte
}

// Line is the transaction as written: body and signature.
func (t *Tx) Line() string { return t.Body + " " + hex.EncodeToString(t.Sig) }

// ParseTx parses a signed transaction line and checks its form (not its
// signature: see Verify).
func ParseTx(line string) (*Tx, error) {
	t, err := parseBody(line, true)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// ParseUnsigned parses the body of a transaction, without signature.
func ParseUnsigned(line string) (*Tx, error) { return parseBody(line, false) }

func parseBody(line string, signed bool) (*Tx, error) {
	line = strings.TrimSpace(line)
	if len(line) > maxTxLine {
		return nil, fmt.Errorf("transaction too large: %d bytes, at most %d", len(line), maxTxLine)
	}
	w := strings.Fields(line)
	if len(w) == 0 {
		return nil, errors.New("empty transaction")
	}
	t := &Tx{Verb: w[0]}
	if signed {
		if len(w) < 2 {
			return nil, errors.New("bad transaction: want a signature at the end")
		}
		sig, err := hex.DecodeString(w[len(w)-1])
		if err != nil || len(sig) != ed25519.SignatureSize {
			return nil, errors.New("bad signature: want 128 hex digits at the end")
		}
		t.Sig = sig
		w = w[:len(w)-1]
	}
	t.Body = strings.Join(w, " ")
	var err error
	switch t.Verb {
	case "transfer":
		if len(w) != 5 {
			return nil, errors.New("bad transfer: want transfer FROM TO AMOUNT NONCE")
		}
		t.Signer, t.To = w[1], w[2]
		if t.Amount, err = amount(w[3], "amount"); err != nil {
			return nil, err
		}
		if err := checkKey(t.To); err != nil {
			return nil, err
		}
	case "contract":
		if len(w) < 2 {
			return nil, errors.New("bad contract: want open or settle")
		}
		t.Op = w[1]
		switch t.Op {
		case "open":
			if len(w) != 8 {
				return nil, errors.New("bad contract open: want contract open PAYER ID HOLDER PRICE DAYS NONCE")
			}
			t.Signer, t.ID, t.Holder = w[2], w[3], w[4]
			if t.Amount, err = amount(w[5], "price"); err != nil {
				return nil, err
			}
			if t.Days, err = amount(w[6], "days"); err != nil {
				return nil, err
			}
			if t.Days > maxDays {
				return nil, fmt.Errorf("bad days %d: at most %d", t.Days, maxDays)
			}
			if err := checkKey(t.Holder); err != nil {
				return nil, err
			}
		case "settle":
			if len(w) != 5 {
				return nil, errors.New("bad contract settle: want contract settle SIGNER ID NONCE")
			}
			t.Signer, t.ID = w[2], w[3]
		default:
			return nil, fmt.Errorf("bad contract: unknown operation %q", t.Op)
		}
		if err := checkID(t.ID); err != nil {
			return nil, err
		}
	case "endpoint":
		if len(w) != 4 {
			return nil, errors.New("bad endpoint: want endpoint KEY ADDR[,ADDR...] NONCE")
		}
		t.Signer = w[1]
		t.Addrs = strings.Split(w[2], ",")
		if len(t.Addrs) > maxAddrs {
			return nil, fmt.Errorf("bad endpoint: more than %d addresses", maxAddrs)
		}
		for _, a := range t.Addrs {
			if a == "" || len(a) > maxAddrLen || !strings.Contains(a, "!") {
				return nil, fmt.Errorf("bad endpoint address %q: want a dial string", a)
			}
		}
	default:
		return nil, fmt.Errorf("unknown transaction %q", t.Verb)
	}
	if err := checkKey(t.Signer); err != nil {
		return nil, err
	}
	n := w[len(w)-1]
	if t.Nonce, err = strconv.ParseUint(n, 10, 64); err != nil || n[0] == '+' || t.Nonce == 0 {
		return nil, fmt.Errorf("bad nonce %q: want a number above 0", n)
	}
	return t, nil
}

// amount parses a positive decimal below maxAmount.
func amount(s, what string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || s[0] == '+' || v == 0 || v >= maxAmount {
		return 0, fmt.Errorf("bad %s %q: want a whole number from 1 below 2^62", what, s)
	}
	return v, nil
}

func checkKey(k string) error {
	if _, err := nodekey.Decode(k); err != nil {
		return fmt.Errorf("bad key: %v", err)
	}
	return nil
}

func checkID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("bad contract id: 1 to %d characters", maxIDLen)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') || id == "." || id == ".." {
			return fmt.Errorf("bad contract id %q: letters, digits, - _ . only", id)
		}
	}
	return nil
}

// message is what a transaction's signature signs.
func message(body string) []byte { return []byte(sigContext + " " + body) }

// Verify checks the signature by the signer's key.
func (t *Tx) Verify() error {
	k, err := nodekey.Decode(t.Signer)
	if err != nil {
		return fmt.Errorf("bad key: %v", err)
	}
	if !ed25519.Verify(k, message(t.Body), t.Sig) {
		return errors.New("bad signature")
	}
	return nil
}

// Sign signs an unsigned transaction line with key, which must be the
// signer's, and returns the signed line.
func Sign(line string, key ed25519.PrivateKey) (string, error) {
	t, err := ParseUnsigned(line)
	if err != nil {
		return "", err
	}
	if t.Signer != nodekey.Encode(key.Public().(ed25519.PublicKey)) {
		return "", fmt.Errorf("bad signer %s: this key is %s", t.Signer, nodekey.Encode(key.Public().(ed25519.PublicKey)))
	}
	t.Sig = ed25519.Sign(key, message(t.Body))
	return t.Line(), nil
}
