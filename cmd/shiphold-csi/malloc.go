package main

// #include <malloc.h>
// #include <stdlib.h>
//
// static void **churn(int n, int size) {
//	void **p = malloc(sizeof(void *) * n);
//	for (int i = 0; i < n; i++) p[i] = malloc(size);
//	return p;
// }
// static void unchurn(void **p, int n) {
//	for (int i = 0; i < n - 1; i++) free(p[i]);
// }
import "C"

// trimCHeap returns the C heap's free pages to the kernel (glibc malloc_trim): librados and
// librbd allocate from glibc's arenas, one per busy thread, and a burst of creates or deletes
// leaves them holding hundreds of MiB freed but resident (malloc gives back only what is
// free at the top of an arena).
func trimCHeap() { C.malloc_trim(0) }

// cHeapChurn allocates n blocks of size bytes in the C heap and frees all but the last, as a
// burst of librados calls leaves it; for the tests.
func cHeapChurn(n, size int) {
	p := C.churn(C.int(n), C.int(size))
	C.unchurn(p, C.int(n))
}
