//! The customer CSV import (the billing seed's format), dry run and confirm.
