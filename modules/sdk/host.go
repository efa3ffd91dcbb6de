package sdk

import (
	"fmt"

	"cheshire/modules/abi"
)

// MaxReadFile is the most ReadFile asks the node for.
const MaxReadFile = 16 << 20

// served is the FS of this module: a guest has one, set by Serve from an
// init function, and the host's calls reach it through the exports.
var served *server

// Serve makes f the file tree of the module. Call it from an init
// function; a later call replaces the tree.
func Serve(f FS) {
	served = newServer(f)
}

// hostDo runs a guest→host request and decodes its response. A refusal
// by the node (Err set) is returned as an Error.
func hostDo(req *abi.Request) (abi.Response, error) {
	b, err := hostCall(req.Append(nil))
	if err != nil {
		return abi.Response{}, err
	}
	var resp abi.Response
	if err := resp.Unmarshal(b); err != nil {
		return abi.Response{}, fmt.Errorf("%s %s: %w", abi.OpName(req.Op), req.Path, err)
	}
	if resp.Err != "" {
		return abi.Response{}, Error(resp.Err)
	}
	return resp, nil
}

// ReadFile returns the content of the namespace file path (at most
// MaxReadFile bytes). The module needs a read permission covering path.
func ReadFile(path string) ([]byte, error) {
	resp, err := hostDo(&abi.Request{Op: abi.OpNSRead, Path: path, Count: MaxReadFile})
	if err != nil {
		return nil, err
	}
	return resp.Data, nil
}

// WriteFile replaces the content of the namespace file path with data,
// making the file (mode 0664) if it does not exist. The module needs a
// write permission covering path.
func WriteFile(path string, data []byte) error {
	_, err := hostDo(&abi.Request{Op: abi.OpNSWrite, Path: path, Data: data})
	return err
}

// Stat describes the namespace file path. The module needs a read
// permission covering path.
func Stat(path string) (Info, error) {
	resp, err := hostDo(&abi.Request{Op: abi.OpNSStat, Path: path})
	if err != nil {
		return Info{}, err
	}
	if len(resp.Infos) != 1 {
		return Info{}, fmt.Errorf("stat %s: node answered %d entries", path, len(resp.Infos))
	}
	return infoFrom(resp.Infos[0]), nil
}

// ReadDir lists the namespace directory path. The module needs a read
// permission covering path.
func ReadDir(path string) ([]Info, error) {
	resp, err := hostDo(&abi.Request{Op: abi.OpNSReadDir, Path: path})
	if err != nil {
		return nil, err
	}
	infos := make([]Info, len(resp.Infos))
	for i, in := range resp.Infos {
		infos[i] = infoFrom(in)
	}
	return infos, nil
}

// HTTP makes an HTTP request (method GET, POST, ...) to url, an http or
// https URL, with body (nil for none) and returns the status code and the
// response body, of which the node passes at most 1 MiB. The module needs
// an http permission covering the URL's host:port.
func HTTP(method, url string, body []byte) (status int, resp []byte, err error) {
	r, err := hostDo(&abi.Request{Op: abi.OpHTTP, Path: url, User: method, Data: body})
	if err != nil {
		return 0, nil, err
	}
	return int(r.Count), r.Data, nil
}

// Logf writes a line to the module's log.
func Logf(format string, args ...any) {
	hostLog(fmt.Sprintf(format, args...))
}
