//! `/dev/sev-guest`: SEV-SNP reports on kernels without configfs-tsm (before Linux 6.7).
//!
//! The `SNP_GET_REPORT` ioctl of `include/uapi/linux/sev-guest.h`: the request is 64 bytes of
//! report data and a VMPL; the response buffer holds the firmware's `MSG_REPORT_RSP` (status,
//! report size, reserved, then the 1184-byte attestation report). The ioctl itself is the only
//! unsafe code in confide; everything around it is checked: the firmware status, the sizes, and
//! that the report carries the report data asked for.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use confide_attest::TeeKind;

use crate::{AttesterError, Collected};

/// Where the kernel exposes the SEV guest device.
pub const DEVICE: &str = "/dev/sev-guest";

const REPORT_LEN: usize = 0x4a0;
const RESPONSE_LEN: usize = 4000;
/// Header of `MSG_REPORT_RSP` before the report: status, report size, 24 reserved bytes.
const RESPONSE_HEADER: usize = 32;

/// `struct snp_report_req`.
#[repr(C)]
struct ReportRequest {
    user_data: [u8; 64],
    vmpl: u32,
    reserved: [u8; 28],
}

/// `struct snp_report_resp`.
#[repr(C)]
struct ReportResponse {
    data: [u8; RESPONSE_LEN],
}

/// `struct snp_guest_request_ioctl`.
#[repr(C)]
struct GuestRequest {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}

/// `_IOWR('S', 0x0, struct snp_guest_request_ioctl)`: read and write, 32 bytes, type 'S'.
const SNP_GET_REPORT: u64 = (3 << 30) | ((size_of::<GuestRequest>() as u64) << 16) | (0x53 << 8);

/// Requests a report binding `report_data` at VMPL 0 from the device at `path`.
pub fn collect(path: &Path, report_data: &[u8; 64]) -> Result<Collected, AttesterError> {
    let device = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| AttesterError::Io {
            what: format!("opening {}", path.display()),
            source,
        })?;
    let request = ReportRequest {
        user_data: *report_data,
        vmpl: 0,
        reserved: [0; 28],
    };
    let mut response = ReportResponse {
        data: [0; RESPONSE_LEN],
    };
    let mut ioctl = GuestRequest {
        msg_version: 1,
        req_data: std::ptr::from_ref(&request) as u64,
        resp_data: std::ptr::from_mut(&mut response) as u64,
        exitinfo2: 0,
    };
    // SAFETY: `device` is an open file descriptor for the whole call. The request and response
    // structures have the kernel's layout (`repr(C)`, sizes as in the UAPI header), live on this
    // stack frame until the call returns, and the kernel writes only into `response` (at most
    // its 4000 bytes) and `ioctl.exitinfo2`; `ioctl` is a valid, exclusively borrowed
    // `snp_guest_request_ioctl`.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            SNP_GET_REPORT as libc::Ioctl,
            std::ptr::from_mut(&mut ioctl),
        )
    };
    if rc != 0 {
        return Err(AttesterError::Io {
            what: format!(
                "SNP_GET_REPORT on {} (firmware error {:#x}, VMM error {:#x})",
                path.display(),
                ioctl.exitinfo2 & 0xffff_ffff,
                ioctl.exitinfo2 >> 32
            ),
            source: std::io::Error::last_os_error(),
        });
    }
    let report = report_from_response(&response.data)?;
    if report[0x50..0x90] != report_data[..] {
        return Err(AttesterError::Protocol(
            "the SEV-SNP report does not carry the report data that was asked for".into(),
        ));
    }
    Ok(Collected {
        kind: TeeKind::SevSnp,
        evidence: report,
        auxblob: None,
    })
}

/// The report inside a `MSG_REPORT_RSP`, if the firmware says it succeeded.
fn report_from_response(data: &[u8]) -> Result<Vec<u8>, AttesterError> {
    let u32_at =
        |at: usize| u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    if data.len() < RESPONSE_HEADER + REPORT_LEN {
        return Err(AttesterError::Protocol("the response is too short".into()));
    }
    let status = u32_at(0);
    if status != 0 {
        return Err(AttesterError::Protocol(format!(
            "the SEV firmware refused the report request (status {status:#x})"
        )));
    }
    let size = u32_at(4) as usize;
    if size != REPORT_LEN {
        return Err(AttesterError::Protocol(format!(
            "the firmware returned a report of {size} bytes, expected {REPORT_LEN}"
        )));
    }
    Ok(data[RESPONSE_HEADER..RESPONSE_HEADER + REPORT_LEN].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layouts_are_the_kernels() {
        assert_eq!(size_of::<ReportRequest>(), 96);
        assert_eq!(size_of::<GuestRequest>(), 32);
        assert_eq!(SNP_GET_REPORT, 0xc020_5300);
    }

    #[test]
    fn the_report_is_taken_from_a_successful_response_only() {
        let report = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/attestation/snp/S1-trustee-milan-vcek/test-report.bin"
        ))
        .unwrap();
        let mut data = vec![0u8; RESPONSE_LEN];
        data[4..8].copy_from_slice(&(REPORT_LEN as u32).to_le_bytes());
        data[32..32 + REPORT_LEN].copy_from_slice(&report);
        assert_eq!(report_from_response(&data).unwrap(), report);
        let mut failed = data.clone();
        failed[0] = 0x16; // INVALID_PARAM
        assert!(report_from_response(&failed).is_err());
        let mut short = data.clone();
        short[4] = 0x00;
        assert!(report_from_response(&short).is_err());
    }

    #[test]
    fn a_missing_device_is_an_error_that_names_it() {
        let err = collect(Path::new("/nonexistent/sev-guest"), &[0; 64]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sev-guest"), "{err}");
    }
}
