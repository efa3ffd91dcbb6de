package tmp

// dataChunk is the most a file's bytes hold in one slice.
const dataChunk = 1 << 20

// fileData is a file's bytes, in chunks of dataChunk bytes: chunk i holds
// bytes [i*dataChunk, (i+1)*dataChunk) of the file, or the part of them
// written so far. A file grows without copying what it holds (one slice
// grown by doubling copied a 1 GiB file's bytes again at every doubling,
// with the tree's lock held); only a chunk grows by doubling, so a
// small file takes little more than its size. Bytes a chunk does not
// hold, and chunks never written (nil), read as zeros.
type fileData struct {
	size   int64
	chunks [][]byte
}

// readAt copies the bytes from off into p and returns how many.
func (d *fileData) readAt(p []byte, off int64) int {
	if off >= d.size || off < 0 {
		return 0
	}
	n := int(min(int64(len(p)), d.size-off))
	for done := 0; done < n; {
		i, o := int((off+int64(done))/dataChunk), int((off+int64(done))%dataChunk)
		k := min(dataChunk-o, n-done)
		m := 0
		if i < len(d.chunks) && o < len(d.chunks[i]) {
			m = copy(p[done:done+k], d.chunks[i][o:])
		}
		clear(p[done+m : done+k])
		done += k
	}
	return n
}

// writeAt writes p at off, growing the file as needed.
func (d *fileData) writeAt(p []byte, off int64) {
	end := off + int64(len(p))
	d.size = max(d.size, end)
	if need := int((end + dataChunk - 1) / dataChunk); need > len(d.chunks) {
		d.chunks = append(d.chunks, make([][]byte, need-len(d.chunks))...)
	}
	for done := 0; done < len(p); {
		i, o := int((off+int64(done))/dataChunk), int((off+int64(done))%dataChunk)
		k := min(dataChunk-o, len(p)-done)
		c := d.chunks[i]
		if need := o + k; need > len(c) {
			if need <= cap(c) {
				old := len(c)
				c = c[:need]
				clear(c[old:]) // bytes left by a truncation
			} else {
				nc := make([]byte, need, min(dataChunk, max(need, 2*cap(c))))
				copy(nc, c)
				c = nc
			}
			d.chunks[i] = c
		}
		copy(c[o:], p[done:done+k])
		done += k
	}
}

// truncate sets the length to l: bytes past it are dropped, and a file
// made longer reads as zeros past its old end.
func (d *fileData) truncate(l int64) {
	if l < d.size {
		keep := int((l + dataChunk - 1) / dataChunk)
		if keep < len(d.chunks) {
			clear(d.chunks[keep:])
			d.chunks = d.chunks[:keep]
		}
		if i := keep - 1; i >= 0 && i < len(d.chunks) {
			if c := d.chunks[i]; len(c) > int(l-int64(i)*dataChunk) {
				d.chunks[i] = c[:l-int64(i)*dataChunk]
			}
		}
	}
	d.size = l
	if l == 0 {
		d.chunks = nil
	}
}
