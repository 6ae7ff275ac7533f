/* Test-only shim for Wine 8, which lacks bcryptprimitives.dll: Rust's standard library
 * (1.78+) imports ProcessPrng from it for random numbers (HashMap keys). Windows 10 and later
 * have the DLL, so this file is never shipped in a package; the package test places it
 * beside the installed program inside a throwaway Wine prefix. */
#include <windows.h>

/* advapi32's SystemFunction036, better known as RtlGenRandom. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
