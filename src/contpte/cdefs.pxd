# The C types of the compiled core (see cdefs.py for what mypy sees).
ctypedef unsigned long long u64
ctypedef long long i64
ctypedef unsigned int u32
ctypedef int i32
ctypedef unsigned short u16
ctypedef unsigned char u8
ctypedef signed char i8

ctypedef u64[::1] U64View
ctypedef i64[::1] I64View
ctypedef u32[::1] U32View
ctypedef i32[::1] I32View
ctypedef u16[::1] U16View
ctypedef u8[::1] U8View
ctypedef i8[::1] I8View
