//! HTTP/1.1 codec on owned buffers. OWNER: http codec helper.
